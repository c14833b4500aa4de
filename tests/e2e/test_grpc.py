"""gRPC against a real TorchServe 0.12: ping, predictions, error bodies, tokens, streaming, management
(GrpcClient and `manage --grpc`).

The module starts its own TorchServe (toolkit.server.LocalServer: own run dir as TMPDIR/TEMP/cwd, free
loopback ports, `torchserve --stop` at the end) with two throwaway function-handler archives built here
(`echo`, `streamer`) plus model_store/mnist.mar and tabular.mar when the lead has built them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_built
from tests.e2e.conftest import ECHO_HANDLER
from toolkit.cli import manage
from toolkit.client.grpc import GrpcClient
from toolkit.errors import ServerError
from toolkit.server.local import LocalServer

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
TOKEN_FAILED = "Token Authorization failed"
REAL_MODELS = {"mnist": "predicted_label", "tabular": "predictions"}  # name -> key of the prediction

# Streams: one intermediate answer per request, then the final one.
STREAM_HANDLER = """
import json
from ts.handler_utils.utils import send_intermediate_predict_response

def handle(data, context):
    if data is None:
        return None
    first = [json.dumps({"part": 1}) for _ in data]
    send_intermediate_predict_response(first, context.request_ids, "Intermediate Prediction success", 200, context)
    return [json.dumps({"part": 2, "echo": bytes(row.get("data") or b"").decode()}) for row in data]
"""


def build_archive(work: Path, store: Path, name: str, version: str, source: str, export_name: str) -> None:
    """A function-handler .mar `store/<export_name>.mar` of model `name`/`version` running `source`."""
    src_dir = work / export_name
    src_dir.mkdir()
    handler = src_dir / f"{name}_handler.py"
    handler.write_text(textwrap.dedent(source))
    archiver = Path(sys.executable).parent / "torch-model-archiver"
    tmp_store = work / f"{export_name}_out"
    tmp_store.mkdir()
    cmd = [str(archiver), "--model-name", name, "--version", version, "--handler", str(handler)]
    subprocess.run([*cmd, "--export-path", str(tmp_store), "--force"], check=True, capture_output=True)
    (tmp_store / f"{name}.mar").rename(store / f"{export_name}.mar")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """TorchServe with echo 1.0, streamer 1.0 and the real models whose archives exist."""
    root = tmp_path_factory.mktemp("grpc_e2e")
    store = root / "store"
    store.mkdir()
    build_archive(root, store, "echo", "1.0", ECHO_HANDLER, "echo")
    build_archive(root, store, "echo", "2.0", ECHO_HANDLER, "echo_v2")
    build_archive(root, store, "streamer", "1.0", STREAM_HANDLER, "streamer")
    models = ["echo.mar", "streamer.mar"]
    for name in REAL_MODELS:
        archive = REPO / "model_store" / f"{name}.mar"
        if archive.is_file():
            (store / archive.name).symlink_to(archive)
            models.append(archive.name)
    with LocalServer(REPO / "config" / "config.properties", root / "run", store, models) as srv:
        yield srv


@pytest.fixture
def client(server: LocalServer) -> Iterator[GrpcClient]:
    urls, keys = server.urls, server.keys
    with GrpcClient(urls.grpc_inference, urls.grpc_management, keys.inference, keys.management, 120) as c:
        yield c


def test_ping(client: GrpcClient) -> None:
    assert client.ping() == "Healthy"


def test_predict_echo(client: GrpcClient) -> None:
    assert json.loads(client.predict("echo", b"hello")) == {"echo": "hello", "version": "1.0"}
    assert json.loads(client.predict("echo", b"x", version="1.0", input_name="body"))["echo"] == "x"


def labelled_samples(name: str) -> list[tuple[str, bytes, object]]:
    """(file name, request body, expected prediction) for each sample in build/models/<name>/samples/."""
    samples_dir = REPO / "build" / "models" / name / "samples"
    expected_file = samples_dir / "expected.json"
    if not expected_file.is_file():
        pytest.fail(f"model_store/{name}.mar exists but {expected_file} does not (make models)")
    expected = json.loads(expected_file.read_text())
    return [(file, (samples_dir / file).read_bytes(), label) for file, label in sorted(expected.items())]


@pytest.mark.parametrize("name", sorted(REAL_MODELS))
def test_predict_real_model(client: GrpcClient, name: str) -> None:
    require_built(REPO / "model_store" / f"{name}.mar", "make archive")
    samples = labelled_samples(name)
    assert samples
    for file, body, label in samples:
        answer = json.loads(client.predict(name, body))
        assert answer[REAL_MODELS[name]] == label, file
        assert ("probabilities" in answer) == (name == "mnist"), file  # tabular only when asked


def test_handler_error_body_becomes_server_error(client: GrpcClient) -> None:
    with pytest.raises(ServerError) as info:
        client.predict("echo", b"bad")
    assert (info.value.status, info.value.kind, info.value.message) == (400, "decode_error", "cannot decode 'bad'")


def test_unknown_model_and_version_are_404(client: GrpcClient) -> None:
    with pytest.raises(ServerError) as info:
        client.predict("nope", b"x")
    assert (info.value.status, info.value.kind, info.value.message) == (
        404,
        "ModelNotFoundException",
        "Model not found: nope",
    )
    with pytest.raises(ServerError) as info:
        client.predict("echo", b"x", version="9.9")
    assert (info.value.status, info.value.kind) == (404, "ModelVersionNotFoundException")


@pytest.mark.parametrize("which", ["missing", "wrong", "other_api_key"])
def test_token_refused(server: LocalServer, which: str) -> None:
    urls, keys = server.urls, server.keys
    inference_key = {"missing": None, "wrong": "not-a-key", "other_api_key": keys.management}[which]
    management_key = {"missing": None, "wrong": "not-a-key", "other_api_key": keys.inference}[which]
    with GrpcClient(urls.grpc_inference, urls.grpc_management, inference_key, management_key, 60) as bad:
        for call in (bad.ping, lambda: bad.predict("echo", b"x"), bad.list_models):
            with pytest.raises(ServerError) as info:
                call()
            assert (info.value.status, info.value.kind) == (403, "PERMISSION_DENIED")
            assert info.value.message.startswith(TOKEN_FAILED)


def test_stream_predict_streaming_handler(client: GrpcClient) -> None:
    parts = [json.loads(p) for p in client.stream_predict("streamer", b"abc")]
    assert parts == [{"part": 1}, {"part": 2, "echo": "abc"}]


def test_stream_predict_non_streaming_handler_fails_in_torchserve_012(client: GrpcClient) -> None:
    """Pins TorchServe 0.12: StreamPredictions to a handler that never streams kills that worker."""
    client.register("echo.mar", model_name="crashy", initial_workers=1)
    try:
        with pytest.raises(ServerError) as info:
            list(client.stream_predict("crashy", b"x"))
        assert (info.value.status, info.value.message) == (500, "Worker died.")
    finally:
        client.unregister("crashy")


def test_management_lifecycle(client: GrpcClient) -> None:
    answer = client.register("echo_v2.mar", initial_workers=1)
    assert answer == {"status": 'Model "echo" Version: 2.0 registered with 1 initial workers'}
    try:
        assert {d["modelVersion"] for d in client.versions("echo")} == {"1.0", "2.0"}  # DescribeModel "all"
        assert json.loads(client.predict("echo", b"x", version="2.0"))["version"] == "2.0"
        assert client.set_default("echo", "2.0") == {
            "status": 'Default version successfully updated for model "echo" to "2.0"'
        }
        assert json.loads(client.predict("echo", b"x"))["version"] == "2.0"
        client.scale("echo", 2, 2, version="2.0")
        (desc,) = client.describe("echo", "2.0")
        assert (desc["minWorkers"], desc["maxWorkers"], len(desc["workers"])) == (2, 2, 2)
        client.set_default("echo", "1.0")
    finally:
        assert client.unregister("echo", "2.0") == {"status": 'Model "echo" unregistered'}
    with pytest.raises(ServerError) as info:
        client.describe("echo", "2.0")
    assert info.value.status == 404
    assert json.loads(client.predict("echo", b"x"))["version"] == "1.0"


def test_duplicate_register_is_unknown_in_torchserve_012(client: GrpcClient) -> None:
    """Pins TorchServe 0.12: a duplicate registration escapes as UNKNOWN without details (REST: 409)."""
    with pytest.raises(ServerError) as info:
        client.register("echo.mar")
    assert (info.value.status, info.value.kind) == (500, "UNKNOWN")


def test_list_models_and_pages(client: GrpcClient) -> None:
    models = client.models()
    assert {"echo", "streamer"} <= {m["modelName"] for m in models}
    paged, token = [], 0
    while True:  # one model per page: nextPageToken is the next page's offset, as a string
        page = client.list_models(limit=1, next_page_token=token)
        paged += page["models"]
        if "nextPageToken" not in page:
            break
        token = int(page["nextPageToken"])
    assert paged == models


def test_manage_grpc_against_server(server: LocalServer, capsys: pytest.CaptureFixture[str]) -> None:
    conn = ["--grpc", "--grpc-address", server.urls.grpc_management, "--key-file", str(server.key_file)]

    def run(*argv: str) -> tuple[int, object, str]:
        """manage --grpc: (exit code, parsed stdout or None, stderr)."""
        rc = manage.main([*argv, *conn])
        out, err = capsys.readouterr()
        return rc, json.loads(out) if out else None, err

    assert run("register", "echo_v2.mar", "--name", "echo_cli", "--workers", "1") == (
        0,
        {"status": 'Model "echo_cli" Version: 2.0 registered with 1 initial workers'},
        "",
    )
    try:
        rc, versions, _ = run("describe", "echo_cli", "--all")
        assert (rc, [(d["modelVersion"], len(d["workers"])) for d in versions]) == (0, [("2.0", 1)])
        assert run("scale", "echo_cli", "--min", "2", "--max", "2")[:2] == (
            0,
            {"status": "Workers scaled to 2 for model: echo_cli"},  # no version asked: none named
        )
        rc, (desc,), _ = run("describe", "echo_cli")
        assert (rc, desc["minWorkers"], len(desc["workers"])) == (0, 2, 2)
        rc, out, err = run("scale", "echo_cli", "--min", "0", "--max", "0")
        assert (rc, out) == (2, None)
        assert err.startswith("error: need 1 <= min_workers <= max_workers over gRPC")
    finally:
        assert run("unregister", "echo_cli") == (0, {"status": 'Model "echo_cli" unregistered'}, "")
    rc, out, err = run("unregister", "nope")
    assert (rc, out) == (2, None)
    assert err == "error: HTTP 404 ModelNotFoundException: Model not found: nope\n"


def test_manage_prints_the_same_over_rest_and_grpc(server: LocalServer, capsys: pytest.CaptureFixture[str]) -> None:
    keys = ["--key-file", str(server.key_file)]
    rest = ["--management-url", server.urls.management, *keys]
    grpc = ["--grpc", "--grpc-address", server.urls.grpc_management, *keys]
    for argv in (["list"], ["set-default", "streamer", "1.0"], ["versions", "no-such-model"]):
        outputs = []
        for protocol in (rest, grpc):
            rc = manage.main([*argv, *protocol])
            outputs.append((rc, *capsys.readouterr()))
        assert outputs[0] == outputs[1], argv
        assert outputs[0][0] == (2 if argv[0] == "versions" else 0), outputs[0]
