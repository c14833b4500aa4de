"""The running container (the `served` fixture, from scripts/image-serve.sh): readiness, answers, user, auth."""

from __future__ import annotations

import json
import socket

import grpc
import pytest
import requests

from tests.container.conftest import Engine, Served
from toolkit.paths import BUILD_MODELS

MNIST_SAMPLES = BUILD_MODELS / "mnist" / "samples"
TABULAR_SAMPLES = BUILD_MODELS / "tabular" / "samples"
GRPC_CALLS = {
    "grpc_inference": "/org.pytorch.serve.grpc.inference.InferenceAPIsService/Ping",
    "grpc_management": "/org.pytorch.serve.grpc.management.ManagementAPIsService/ListModels",
}


def test_not_healthy_until_every_model_is_ready(engine: Engine, served: Served) -> None:
    print(f"image-serve.sh: start to healthy {served.ready_s:.1f} s\n{served.serve_output}")
    assert "not healthy yet: not ready:" in served.serve_output
    assert engine.run("healthcheck", "run", served.name, check=False).returncode == 0
    mgmt = requests.get(f"{served.url(served.management)}/models", timeout=10,
                        headers={"Authorization": f"Bearer {served.keys().management}"})
    names = {m["modelName"] for m in mgmt.json()["models"]}
    assert {"mnist", "tabular"} <= names
    for name in names:
        desc = requests.get(f"{served.url(served.management)}/models/{name}/all", timeout=10,
                            headers={"Authorization": f"Bearer {served.keys().management}"}).json()
        for version in desc:
            ready = sum(w["status"] == "READY" for w in version["workers"])
            assert ready >= version["minWorkers"], version


def test_key_file_on_the_host_in_torchserve_shape(served: Served) -> None:
    data = json.loads((served.run_dir / "key_file.json").read_text())
    assert {"management", "inference", "API"} <= set(data)


def test_mnist_png_answers(served: Served) -> None:
    expected = json.loads((MNIST_SAMPLES / "expected.json").read_text())
    for png in sorted(MNIST_SAMPLES.glob("*.png"))[:5]:
        r = requests.post(f"{served.url(served.inference)}/predictions/mnist", data=png.read_bytes(), timeout=30,
                          headers={"Authorization": f"Bearer {served.keys().inference}", "Content-Type": "image/png"})
        assert r.status_code == 200, r.text
        want = expected[png.name]
        want = want[0] if isinstance(want, list) else want
        assert r.json()["predicted_label"] == want, (png.name, r.text)


def test_tabular_json_answers(served: Served) -> None:
    expected = json.loads((TABULAR_SAMPLES / "expected.json").read_text())
    for sample in sorted(TABULAR_SAMPLES.glob("sample_*.json")):
        r = requests.post(f"{served.url(served.inference)}/predictions/tabular", data=sample.read_bytes(),
                          timeout=30, headers={"Authorization": f"Bearer {served.keys().inference}",
                                               "Content-Type": "application/json"})
        assert r.status_code == 200, r.text
        assert r.json()["predictions"] == expected[sample.name], (sample.name, r.text)


def test_every_process_runs_as_non_root(engine: Engine, served: Served) -> None:
    assert engine.run("exec", served.name, "id", "-u").stdout.strip() != "0"
    # every process of the container (tini, entrypoint, JVM, Python workers): real uid from /proc
    script = "for s in /proc/[0-9]*/status; do awk '/^Uid:/ { print $2 }' $s; done"
    uids = set(engine.run("exec", served.name, "sh", "-c", script).stdout.split())
    assert uids and "0" not in uids, uids


@pytest.mark.parametrize("port_name,path", [("inference", "/ping"), ("inference", "/predictions/mnist"),
                                            ("management", "/models")])
def test_rest_listeners_refuse_without_token(served: Served, port_name: str, path: str) -> None:
    url = served.url(getattr(served, port_name)) + path
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        r = requests.get(url, headers=headers, timeout=10)
        assert r.status_code == 400 and "InvalidKeyException" in r.text, (url, r.status_code, r.text)


@pytest.mark.parametrize("port_name", sorted(GRPC_CALLS))
def test_grpc_listeners_refuse_without_token(served: Served, port_name: str) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{getattr(served, port_name)}") as channel:
        call = channel.unary_unary(GRPC_CALLS[port_name], request_serializer=lambda b: b,
                                   response_deserializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as err:
            call(b"", timeout=10)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED, err.value


def test_metrics_listener_not_reachable_from_the_host(served: Served) -> None:
    """TorchServe serves /metrics without a token: it binds the container's loopback, so even a published
    metrics port answers nothing."""
    with pytest.raises((requests.ConnectionError, requests.ReadTimeout, socket.timeout)):
        r = requests.get(f"{served.url(served.metrics)}/metrics", timeout=5)
        pytest.fail(f"metrics answered {r.status_code} from the host")
