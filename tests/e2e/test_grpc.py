"""gRPC against a real TorchServe 0.12: ping, predictions, error bodies, tokens, streaming, management
(GrpcInferenceClient, GrpcManagementClient and `manage --grpc`).

Runs on the session's shared echo server (tests/e2e/conftest.py: throwaway function-handler archives `echo`
1.0 and `streamer` 1.0 loaded, `echo` 2.0 in its store); whatever a test registers there it unregisters in a
`finally`. The real models (mnist, tabular) are asked over the session model server's gRPC port.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.paths import BUILD, STORE, require_built
from toolkit.cli import manage
from toolkit.client.grpc import GrpcInferenceClient, GrpcManagementClient
from toolkit.errors import ServerError
from toolkit.server.local import LocalServer
from toolkit.torchserve import TOKEN_FAILED

REAL_MODELS = {"mnist": "predicted_label", "tabular": "predictions"}  # name -> key of the prediction


@pytest.fixture
def client(echo_server: LocalServer) -> Iterator[GrpcInferenceClient]:
    with GrpcInferenceClient(echo_server.urls.grpc_inference, echo_server.read_keys().inference, 120) as c:
        yield c


@pytest.fixture
def mgmt(echo_server: LocalServer) -> Iterator[GrpcManagementClient]:
    with GrpcManagementClient(echo_server.urls.grpc_management, echo_server.read_keys().management, 120) as c:
        yield c


@pytest.fixture
def model_client(server: LocalServer) -> Iterator[GrpcInferenceClient]:
    """A gRPC client of the session model server (the real models)."""
    with GrpcInferenceClient(server.urls.grpc_inference, server.read_keys().inference, 120) as c:
        yield c


def test_ping(client: GrpcInferenceClient) -> None:
    assert client.ping() == "Healthy"


def test_predict_echo(client: GrpcInferenceClient) -> None:
    assert json.loads(client.predict("echo", b"hello")) == {"echo": "hello", "version": "1.0"}
    assert json.loads(client.predict("echo", b"x", version="1.0", input_name="body"))["echo"] == "x"


def labelled_samples(name: str) -> list[tuple[str, bytes, object]]:
    """(file name, request body, expected prediction) for each sample in build/models/<name>/samples/."""
    samples_dir = BUILD / name / "samples"
    expected_file = samples_dir / "expected.json"
    if not expected_file.is_file():
        pytest.fail(f"model_store/{name}.mar exists but {expected_file} does not (make models)")
    expected = json.loads(expected_file.read_text())
    return [(file, (samples_dir / file).read_bytes(), label) for file, label in sorted(expected.items())]


@pytest.mark.parametrize("name", sorted(REAL_MODELS))
def test_predict_real_model(model_client: GrpcInferenceClient, name: str) -> None:
    require_built(STORE / f"{name}.mar", "make archive")
    samples = labelled_samples(name)
    assert samples
    for file, body, label in samples:
        answer = json.loads(model_client.predict(name, body))
        assert answer[REAL_MODELS[name]] == label, file
        assert ("probabilities" in answer) == (name == "mnist"), file  # tabular only when asked


def test_handler_error_body_becomes_server_error(client: GrpcInferenceClient) -> None:
    with pytest.raises(ServerError) as info:
        client.predict("echo", b"bad")
    assert (info.value.status, info.value.kind, info.value.message) == (400, "decode_error", "cannot decode 'bad'")


def test_unknown_model_and_version_are_404(client: GrpcInferenceClient) -> None:
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
def test_token_refused(echo_server: LocalServer, which: str) -> None:
    urls, keys = echo_server.urls, echo_server.read_keys()
    inference_key = {"missing": None, "wrong": "not-a-key", "other_api_key": keys.management}[which]
    management_key = {"missing": None, "wrong": "not-a-key", "other_api_key": keys.inference}[which]
    bad = GrpcInferenceClient(urls.grpc_inference, inference_key, 60)
    bad_mgmt = GrpcManagementClient(urls.grpc_management, management_key, 60)
    with bad, bad_mgmt:
        for call in (bad.ping, lambda: bad.predict("echo", b"x"), bad_mgmt.list_models):
            with pytest.raises(ServerError) as info:
                call()
            assert (info.value.status, info.value.kind) == (403, "PERMISSION_DENIED")
            assert info.value.message.startswith(TOKEN_FAILED)


def test_stream_predict_streaming_handler(client: GrpcInferenceClient) -> None:
    parts = [json.loads(p) for p in client.stream_predict("streamer", b"abc")]
    assert parts == [{"part": 1}, {"part": 2, "echo": "abc"}]


def test_stream_predict_non_streaming_handler_fails_in_torchserve_012(
    client: GrpcInferenceClient, mgmt: GrpcManagementClient
) -> None:
    """Pins TorchServe 0.12: StreamPredictions to a handler that never streams kills that worker."""
    mgmt.register("echo_1.0.mar", model_name="crashy", initial_workers=1)
    try:
        with pytest.raises(ServerError) as info:
            list(client.stream_predict("crashy", b"x"))
        assert (info.value.status, info.value.message) == (500, "Worker died.")
    finally:
        mgmt.unregister("crashy")


def test_management_lifecycle(client: GrpcInferenceClient, mgmt: GrpcManagementClient) -> None:
    answer = mgmt.register("echo_2.0.mar", initial_workers=1)
    assert answer == {"status": 'Model "echo" Version: 2.0 registered with 1 initial workers'}
    try:
        assert {d["modelVersion"] for d in mgmt.versions("echo")} == {"1.0", "2.0"}  # DescribeModel "all"
        assert json.loads(client.predict("echo", b"x", version="2.0"))["version"] == "2.0"
        assert mgmt.set_default("echo", "2.0") == {
            "status": 'Default version successfully updated for model "echo" to "2.0"'
        }
        assert json.loads(client.predict("echo", b"x"))["version"] == "2.0"
        mgmt.scale("echo", 2, 2, version="2.0")
        (desc,) = mgmt.describe("echo", "2.0")
        assert (desc["minWorkers"], desc["maxWorkers"], len(desc["workers"])) == (2, 2, 2)
    finally:
        mgmt.set_default("echo", "1.0")  # the shared echo server keeps 1.0 as default
        assert mgmt.unregister("echo", "2.0") == {"status": 'Model "echo" unregistered'}
    with pytest.raises(ServerError) as info:
        mgmt.describe("echo", "2.0")
    assert info.value.status == 404
    assert json.loads(client.predict("echo", b"x"))["version"] == "1.0"


def test_duplicate_register_is_unknown_in_torchserve_012(mgmt: GrpcManagementClient) -> None:
    """Pins TorchServe 0.12: a duplicate registration escapes as UNKNOWN without details (REST: 409)."""
    with pytest.raises(ServerError) as info:
        mgmt.register("echo_1.0.mar")
    assert (info.value.status, info.value.kind) == (500, "UNKNOWN")


def test_list_models_and_pages(mgmt: GrpcManagementClient) -> None:
    models = mgmt.models()
    assert {"echo", "streamer"} <= {m["modelName"] for m in models}
    paged, token = [], 0
    while True:  # one model per page: nextPageToken is the next page's offset, as a string
        page = mgmt.list_models(limit=1, next_page_token=token)
        paged += page["models"]
        if "nextPageToken" not in page:
            break
        token = int(page["nextPageToken"])
    assert paged == models


def test_manage_grpc_against_server(echo_server: LocalServer, capsys: pytest.CaptureFixture[str]) -> None:
    conn = ["--grpc", "--grpc-address", echo_server.urls.grpc_management, "--key-file", str(echo_server.key_file)]

    def run(*argv: str) -> tuple[int, object, str]:
        """manage --grpc: (exit code, parsed stdout or None, stderr)."""
        rc = manage.main([*argv, *conn])
        out, err = capsys.readouterr()
        return rc, json.loads(out) if out else None, err

    assert run("register", "echo_2.0.mar", "--name", "echo_cli", "--workers", "1") == (
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


def test_manage_prints_the_same_over_rest_and_grpc(
    echo_server: LocalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = ["--key-file", str(echo_server.key_file)]
    rest = ["--management-url", echo_server.urls.management, *keys]
    grpc = ["--grpc", "--grpc-address", echo_server.urls.grpc_management, *keys]
    for argv in (["list"], ["set-default", "streamer", "1.0"], ["versions", "no-such-model"]):
        outputs = []
        for protocol in (rest, grpc):
            rc = manage.main([*argv, *protocol])
            outputs.append((rc, *capsys.readouterr()))
        assert outputs[0] == outputs[1], argv
        assert outputs[0][0] == (2 if argv[0] == "versions" else 0), outputs[0]
