"""The Open Inference Protocol through a real TorchServe 0.12: KServe's own Python client and a plain HTTP client
on `/v2/models/<model>/infer`, one request at a time and 64 in flight with batchSize 32; what TorchServe itself
routes under /v2; and a server started from the KServe layout (`make kserve-layout`)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.e2e._helpers import CONFIG, START_TIMEOUT_S, batch_lines, send_together, wait_for
from tests.paths import BUILD, ROOT, require_built
from toolkit.archive.kserve import write_layout
from toolkit.bench.aioclient import PostRequest
from toolkit.client.auth import auth_header
from toolkit.process import free_ports
from toolkit.properties import read_properties, rewrite_properties
from toolkit.server.diagnose import log_offset
from toolkit.server.local import LocalServer

MNIST_SAMPLES = BUILD / "mnist" / "samples"
TABULAR_SAMPLES = BUILD / "tabular" / "samples"
KSERVE_PYTHON = ROOT / ".venv-kserve" / "bin" / "python"
KSERVE_CLIENT = Path(__file__).with_name("kserve_client.py")
INFER = "/v2/models/{}/infer"


def samples() -> tuple[list[Path], list[int]]:
    expected = json.loads(require_built(MNIST_SAMPLES / "expected.json", "make models").read_text())
    names = sorted(expected)
    return [MNIST_SAMPLES / n for n in names], [expected[n] for n in names]


def pixels(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("L"))


def rest_labels(server: LocalServer, paths: list[Path]) -> list[int]:
    """The TorchScript REST path's labels for the PNGs."""
    with server.inference_client() as client:
        return [client.predict("mnist", p.read_bytes(), "image/png")[1]["predicted_label"] for p in paths]


def oip_body(array: np.ndarray, datatype: str = "UINT8", **extra) -> bytes:
    data = array.astype(np.uint8 if datatype == "UINT8" else np.float32).tolist()
    return json.dumps({"inputs": [{"name": "x", "shape": list(array.shape), "datatype": datatype, "data": data}],
                       **extra}).encode()


def post(server: LocalServer, key: str, model: str, body: bytes, headers: dict | None = None) -> requests.Response:
    headers = {**(auth_header(key) if key else {}), "Content-Type": "application/json", **(headers or {})}
    return requests.post(server.urls.inference + INFER.format(model), data=body, headers=headers, timeout=60)


def labels_of(response: requests.Response) -> list[int]:
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    return outputs["predicted_label"]["data"]


def mnist_batches(server: LocalServer, offset: int, requests_: int) -> list[dict[str, int]] | None:
    batches = batch_lines(server.log_dir, offset, "mnist")
    return batches if sum(b["requests"] for b in batches) >= requests_ else None


# ---- KServe's client ------------------------------------------------------------------------------------


def test_kserve_client_classifies_the_samples_one_by_one_and_64_at_once(server, keys):
    if not KSERVE_PYTHON.exists():
        pytest.fail(".venv-kserve is missing: run `make kserve-client` (make test and make test-e2e do)")
    paths, expected = samples()
    assert rest_labels(server, paths) == expected
    offset = log_offset(server.log_dir)
    done = subprocess.run(
        [str(KSERVE_PYTHON), str(KSERVE_CLIENT), "--url", server.urls.inference, "--model", "mnist",
         "--token", keys.inference, "--concurrent", "64", *map(str, paths)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["sequential_json"] == expected
    assert result["sequential_binary"] == expected
    assert result["concurrent"] == [expected[i % len(expected)] for i in range(64)]
    assert result["ids"] == [f"kserve-{i}" for i in range(len(paths))]
    assert result["outputs"] == {"probabilities": ["FP32", [1, 10]], "predicted_label": ["INT64", [1]]}
    assert result["error"]["status"] == 400 and "input-0" in result["error"]["message"], result["error"]
    total = 2 * len(paths) + 64 + 1
    sizes = [b["requests"] for b in wait_for(lambda: mnist_batches(server, offset, total), 10)]
    assert max(sizes) > 1, sizes  # the 64 concurrent requests were batched


# ---- a plain HTTP client ---------------------------------------------------------------------------------


def test_plain_http_one_request_at_a_time(server, keys):
    paths, expected = samples()
    for path, label in zip(paths, expected, strict=True):
        image = pixels(path)
        assert labels_of(post(server, keys.inference, "mnist", oip_body(image[None]))) == [label]
        assert labels_of(post(server, keys.inference, "mnist", oip_body(image[None, None], "FP32"))) == [label]
    many = np.stack([pixels(p) for p in paths])
    answer = post(server, keys.inference, "mnist", oip_body(many, id="all-ten"))
    body = answer.json()
    assert body["model_name"] == "mnist" and body["model_version"] == "1.0" and body["id"] == "all-ten"
    assert labels_of(answer) == expected
    probabilities = next(o for o in body["outputs"] if o["name"] == "probabilities")
    assert probabilities["shape"] == [10, 10] and probabilities["datatype"] == "FP32"


def test_plain_http_64_at_once_are_batched_and_match_rest(server, keys):
    paths, expected = samples()
    images = [pixels(p) for p in paths]
    assert rest_labels(server, paths) == expected
    offset = log_offset(server.log_dir)
    reqs = [PostRequest(INFER.format("mnist"), oip_body(images[i % 10][None])) for i in range(64)]
    outcomes = send_together(server.urls.inference, keys.inference, reqs)
    assert [o.status for o in outcomes] == [200] * 64
    got = [json.loads(o.body)["outputs"][1]["data"][0] for o in outcomes]
    assert got == [expected[i % 10] for i in range(64)]
    sizes = [b["requests"] for b in wait_for(lambda: mnist_batches(server, offset, 64), 10)]
    assert max(sizes) > 1, sizes


def test_binary_extension_both_ways(server, keys):
    """TorchServe passes the request headers through to the handler and the handler's response headers back,
    so the binary tensor extension works: a UINT8 tensor after the JSON, outputs asked for as binary."""
    paths, expected = samples()
    raw = np.stack([pixels(p) for p in paths]).astype(np.uint8).tobytes()
    head = json.dumps({"inputs": [{"name": "x", "shape": [10, 28, 28], "datatype": "UINT8",
                                   "parameters": {"binary_data_size": len(raw)}}],
                       "outputs": [{"name": "predicted_label", "parameters": {"binary_data": True}}]}).encode()
    answer = post(server, keys.inference, "mnist", head + raw, {
        "Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(head))})
    assert answer.status_code == 200, answer.text
    length = int(answer.headers["Inference-Header-Content-Length"])
    assert answer.headers["Content-Type"] == "application/octet-stream"
    outputs = json.loads(answer.content[:length])["outputs"]
    assert outputs == [{"name": "predicted_label", "shape": [10], "datatype": "INT64",
                        "parameters": {"binary_data_size": 80}}]
    assert np.frombuffer(answer.content[length:], dtype="<i8").tolist() == expected


def test_tabular_matches_rest(server, keys):
    body = json.loads(require_built(TABULAR_SAMPLES / "sample_0.json", "make models").read_text())
    rows = np.asarray(body["inputs"], dtype=np.float32)
    with server.inference_client() as client:
        rest = client.predict("tabular", json.dumps({"inputs": body["inputs"]}).encode(), "application/json")[1]
    oip = json.dumps({"inputs": [{"name": "features", "shape": list(rows.shape), "datatype": "FP32",
                                  "data": rows.reshape(-1).tolist()}]}).encode()
    assert labels_of(post(server, keys.inference, "tabular", oip)) == rest["predictions"]


def test_mistakes_get_their_own_400_in_a_batch(server, keys):
    image = pixels(samples()[0][0])[None]
    good, bad_type = oip_body(image), oip_body(image).replace(b'"UINT8"', b'"INT64"')
    unknown_output = oip_body(image, outputs=[{"name": "logits"}])
    wrong_length = json.dumps({"inputs": [{"name": "x", "shape": [2, 28, 28], "datatype": "FP32",
                                           "data": [0.0] * 784}]}).encode()
    reqs = [PostRequest(INFER.format("mnist"), body) for body in (good, bad_type, unknown_output, wrong_length, good)]
    outcomes = send_together(server.urls.inference, keys.inference, reqs)
    assert [o.status for o in outcomes] == [200, 400, 400, 400, 200]
    errors = [json.loads(o.body) for o in outcomes[1:4]]
    assert all(set(e) == {"error"} for e in errors), errors
    assert "'x'" in errors[0]["error"] and "INT64" in errors[0]["error"]
    assert "'logits'" in errors[1]["error"]
    assert "'x'" in errors[2]["error"] and "1568" in errors[2]["error"]


def test_what_torchserve_routes_under_v2_without_the_oip_flag(server, keys):
    base, headers = server.urls.inference, auth_header(keys.inference)
    for path in ("/v2/health/live", "/v2/health/ready", "/v2", "/v2/models/mnist", "/v2/models/mnist/ready"):
        assert requests.get(base + path, headers=headers, timeout=10).status_code == 404, path
    versioned = requests.post(base + "/v2/models/mnist/versions/1.0/infer", headers=headers, timeout=10)
    assert versioned.status_code == 404
    assert requests.post(base + INFER.format("nope"), data=b"{}", headers=headers, timeout=10).status_code == 404
    assert requests.post(base + INFER.format("mnist"), data=b"{}", timeout=10).status_code == 400  # no token


# ---- the KServe layout -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def layout_server(tmp_path_factory) -> LocalServer:
    """TorchServe started as the ServingRuntime starts it, from a KServe layout of mnist alone: no --models
    (model_snapshot loads it), token authorization off, ts_open_inference_protocol on. Only the listener ports
    and model_store change (free loopback ports, the layout's folder), and metrics_config points at this
    checkout's file instead of the image's."""
    root = tmp_path_factory.mktemp("kserve_layout")
    store = root / "store"
    store.mkdir()
    shutil.copy2(require_built(ROOT / "model_store" / "mnist.mar", "make archive"), store / "mnist.mar")
    layout = root / "layout"
    write_layout(layout, store, CONFIG)
    config = layout / "config" / "config.properties"
    metrics = read_properties(CONFIG).get("metrics_config")
    if metrics:
        config.write_text(rewrite_properties(config.read_text(), {"metrics_config": str(ROOT / metrics)}))
    server = LocalServer(root / "run", config, layout / "model-store", [], ports=free_ports())
    with server.running(START_TIMEOUT_S):
        yield server


def test_layout_server_loads_the_snapshot_with_the_archive_settings(layout_server):
    with layout_server.management_client() as mgmt:
        (desc,) = mgmt.describe("mnist")
    assert (desc["modelVersion"], desc["minWorkers"], desc["batchSize"], desc["maxBatchDelay"]) == ("1.0", 2, 32, 1)
    assert not layout_server.key_file.exists()  # token authorization off: no key file


def test_layout_server_health_routes_and_oip_without_token(layout_server):
    base = layout_server.urls.inference
    assert requests.get(base + "/ping", timeout=10).json() == {"status": "Healthy"}
    assert requests.get(base + "/v2/health/live", timeout=10).json() == {"live": True}
    assert requests.get(base + "/v2/health/ready", timeout=10).json() == {"ready": True}
    meta = requests.get(base + "/v2", timeout=10).json()
    assert meta["name"] == "Torchserve" and meta["version"] == "0.12.0"
    assert requests.get(base + "/v2/models/mnist", timeout=10).status_code == 404  # no model metadata in 0.12
    assert requests.get(base + "/v2/models/mnist/ready", timeout=10).status_code == 404
    paths, expected = samples()
    assert labels_of(post(layout_server, "", "mnist", oip_body(np.stack([pixels(p) for p in paths])))) == expected


def test_readiness_command_of_the_probes(layout_server):
    """The probe command of deploy/kserve/inferenceservice.yaml, pointed at this server's run dir and config."""
    cmd = [sys.executable, "-m", "toolkit.server", "ready", "--run-dir", str(layout_server.run_dir),
           "--config", str(layout_server.config_path), "--model-store", str(layout_server.model_store)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert (done.returncode, done.stdout.strip()) == (0, "ready"), done.stdout + done.stderr
