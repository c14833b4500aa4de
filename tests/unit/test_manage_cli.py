"""The `manage` and `predict` command lines against a real HTTP server on 127.0.0.1 that answers like
TorchServe 0.12 (same error bodies, statuses and paths, as recorded from a real server).

Checks what each command sends (method, path, query, headers, body) and how it prints answers and errors:
one stderr line `error: HTTP <status> <type>: <message>`, exit 2 for 4xx, 1 otherwise. `manage --grpc` runs
against a fake gRPC server in test_grpc_client.py; here both clients are checked against the shared protocol.
"""

from __future__ import annotations

import inspect
import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from toolkit.cli import manage, predict
from toolkit.cli.predict import InputError, read_input
from toolkit.client.grpc import GrpcClient
from toolkit.client.management import ManagementApi
from toolkit.client.rest import ManagementClient

Answer = tuple[int, bytes]
Route = Answer | Callable[[dict[str, str]], Answer]

KEY_FILE = {"management": {"key": "mgmt-key"}, "inference": {"key": "infer-key"}, "API": {"key": "api"}}


def error_body(status: int, kind: str, message: str) -> bytes:
    return json.dumps({"code": status, "type": kind, "message": message}, indent=2).encode()


@dataclass
class Seen:
    """One request as the stub received it."""

    method: str
    raw_path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


class StubTorchServe:
    """A threaded HTTP server on 127.0.0.1:<free port>; answers (method, path) from `routes`, 404 else."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Route] = {}
        self.seen: list[Seen] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                headers = {k.lower(): v for k, v in self.headers.items()}
                stub.seen.append(Seen(self.command, parts.path, query, headers, self.rfile.read(length)))
                route = stub.routes.get((self.command, parts.path))
                if route is None:
                    status, body = 404, error_body(404, "ResourceNotFoundException", "Requested resource is not found")
                else:
                    status, body = route(query) if callable(route) else route
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, format: str, *args: object) -> None:  # keep stderr for the CLI under test
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def ok(self, method: str, path: str, payload: object, status: int = 200) -> None:
        self.routes[(method, path)] = (status, json.dumps(payload).encode())

    def fail(self, method: str, path: str, status: int, kind: str, message: str) -> None:
        self.routes[(method, path)] = (status, error_body(status, kind, message))


@pytest.fixture
def stub() -> Iterator[StubTorchServe]:
    server = StubTorchServe()
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()
    server.thread.join()


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "key_file.json"
    path.write_text(json.dumps(KEY_FILE, indent=2))
    return path


@pytest.fixture
def run_manage(
    stub: StubTorchServe, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> Callable[..., tuple[int, str, str]]:
    """manage.main(argv + connection options to the stub) -> (exit code, stdout, stderr)."""

    def run(*argv: str) -> tuple[int, str, str]:
        rc = manage.main([*argv, "--management-url", stub.url, "--key-file", str(key_file)])
        out, err = capsys.readouterr()
        return rc, out, err

    return run


# --- manage: what is sent, what is printed -------------------------------------------------------------


def test_list_prints_models_and_sends_the_management_key(stub: StubTorchServe, run_manage: Callable) -> None:
    models = [{"modelName": "mnist", "modelUrl": "mnist.mar"}]
    stub.ok("GET", "/models", {"models": models})
    assert run_manage("list") == (0, json.dumps(models, indent=2) + "\n", "")
    (seen,) = stub.seen
    assert seen.headers["authorization"] == "Bearer mgmt-key"


def test_list_follows_next_page_tokens(stub: StubTorchServe, run_manage: Callable) -> None:
    def pages(query: dict[str, str]) -> tuple[int, bytes]:
        if "next_page_token" not in query:
            return 200, json.dumps({"nextPageToken": "1", "models": [{"modelName": "a"}]}).encode()
        return 200, json.dumps({"models": [{"modelName": "b"}]}).encode()

    stub.routes[("GET", "/models")] = pages
    rc, out, _ = run_manage("list")
    assert rc == 0
    assert [m["modelName"] for m in json.loads(out)] == ["a", "b"]
    assert [s.query.get("next_page_token") for s in stub.seen] == [None, "1"]


def test_register_maps_every_option_to_torchserve_parameters(stub: StubTorchServe, run_manage: Callable) -> None:
    stub.ok("POST", "/models", {"status": 'Model "m" Version: 1.0 registered with 2 initial workers'})
    argv = ["mnist.mar", "--name", "m", "--batch-size", "4", "--max-batch-delay-ms", "50", "--workers", "2"]
    rc, out, err = run_manage("register", *argv, "--response-timeout-s", "30")
    assert (rc, err) == (0, "")
    assert json.loads(out) == {"status": 'Model "m" Version: 1.0 registered with 2 initial workers'}
    assert stub.seen[0].query == {
        "url": "mnist.mar",
        "model_name": "m",
        "batch_size": "4",
        "max_batch_delay": "50",
        "initial_workers": "2",
        "response_timeout": "30",
        "synchronous": "true",
    }


def test_register_defaults_send_only_url_and_synchronous(stub: StubTorchServe, run_manage: Callable) -> None:
    stub.ok("POST", "/models", {"status": "Processing worker updates..."}, status=202)
    assert run_manage("register", "tabular.mar", "--no-wait")[0] == 0
    assert stub.seen[0].query == {"url": "tabular.mar", "synchronous": "false"}


@pytest.mark.parametrize(
    ("argv", "method", "path", "query"),
    [
        (["unregister", "mnist"], "DELETE", "/models/mnist", {}),
        (["unregister", "mnist", "--version", "1.0"], "DELETE", "/models/mnist/1.0", {}),
        (
            ["scale", "mnist", "--min", "1", "--max", "3", "--version", "2.0"],
            "PUT",
            "/models/mnist/2.0",
            {"min_worker": "1", "max_worker": "3", "synchronous": "true"},
        ),
        (["describe", "mnist"], "GET", "/models/mnist", {}),
        (["describe", "mnist", "--version", "2.0"], "GET", "/models/mnist/2.0", {}),
        (["describe", "mnist", "--all"], "GET", "/models/mnist/all", {}),
        (["versions", "mnist"], "GET", "/models/mnist/all", {}),
        (["set-default", "mnist", "2.0"], "PUT", "/models/mnist/2.0/set-default", {}),
        (["describe", "a/b c"], "GET", "/models/a%2Fb%20c", {}),
    ],
)
def test_commands_call_the_right_endpoint(
    stub: StubTorchServe, run_manage: Callable, argv: list[str], method: str, path: str, query: dict
) -> None:
    stub.ok(method, path, {"status": "ok"})
    assert run_manage(*argv) == (0, json.dumps({"status": "ok"}, indent=2) + "\n", "")
    assert (stub.seen[0].method, stub.seen[0].raw_path, stub.seen[0].query) == (method, path, query)


def test_connection_options_work_before_the_command(stub: StubTorchServe, key_file: Path, capsys) -> None:
    stub.ok("GET", "/models", {"models": []})
    assert manage.main(["--management-url", stub.url, "--key-file", str(key_file), "list"]) == 0
    assert capsys.readouterr().out == "[]\n"


def test_version_and_all_are_exclusive(run_manage: Callable) -> None:
    with pytest.raises(SystemExit) as info:
        run_manage("describe", "mnist", "--version", "1.0", "--all")
    assert info.value.code == 2


# --- the management protocol both clients satisfy ------------------------------------------------------

PROTOCOL_METHODS = sorted(n for n, v in vars(ManagementApi).items() if callable(v) and not n.startswith("_"))


def test_protocol_has_the_management_surface() -> None:
    surface = ["close", "describe", "models", "register", "scale", "set_default", "unregister", "versions"]
    assert surface == PROTOCOL_METHODS


@pytest.mark.parametrize("client_class", [ManagementClient, GrpcClient])
@pytest.mark.parametrize("method", PROTOCOL_METHODS)
def test_both_clients_satisfy_the_protocol(client_class: type, method: str) -> None:
    """Same parameters (name, kind, default) and return annotation; extra client parameters are optional."""
    wanted = inspect.signature(getattr(ManagementApi, method))
    got = inspect.signature(getattr(client_class, method))
    wanted_params = [(p.name, p.kind, p.default) for p in wanted.parameters.values()]
    got_params = [(p.name, p.kind, p.default) for p in got.parameters.values()]
    assert got_params[: len(wanted_params)] == wanted_params
    assert all(default is not inspect.Parameter.empty for _, _, default in got_params[len(wanted_params) :])
    assert got.return_annotation == wanted.return_annotation


# --- manage: errors ------------------------------------------------------------------------------------

# (argv, method, path, status, TorchServe type, message, exit code); statuses/messages as TorchServe 0.12 sends.
SERVER_ERRORS = [
    (["register", "mnist_v2.0.mar"], "POST", "/models", 409, "ConflictStatusException",
     "Model version 2.0 is already registered for model mnist", 2),
    (["register", "x.mar"], "POST", "/models", 404, "ModelNotFoundException", "Model not found at: x.mar", 2),
    (["unregister", "mnist", "--version", "1.0"], "DELETE", "/models/mnist/1.0", 403,
     "InvalidModelVersionException", "Cannot remove default version for model mnist", 2),
    (["describe", "nope"], "GET", "/models/nope", 404, "ModelNotFoundException", "Model not found: nope", 2),
    (["describe", "mnist", "--version", "9.9"], "GET", "/models/mnist/9.9", 404, "ModelVersionNotFoundException",
     "Model version: 9.9 does not exist for model: mnist", 2),
    (["set-default", "mnist", "2.0"], "PUT", "/models/mnist/2.0/set-default", 405, "MethodNotAllowedException",
     "Requested method is not allowed, please refer to API document.", 2),
    (["scale", "mnist", "--min", "1", "--max", "1"], "PUT", "/models/mnist", 503, "ServiceUnavailableException",
     "Model \"mnist\" has no worker to serve inference request.", 1),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "method", "path", "status", "kind", "message", "code"), SERVER_ERRORS)
def test_server_errors_print_one_line(
    stub: StubTorchServe,
    run_manage: Callable,
    argv: list[str],
    method: str,
    path: str,
    status: int,
    kind: str,
    message: str,
    code: int,
) -> None:
    stub.fail(method, path, status, kind, message)
    assert run_manage(*argv) == (code, "", f"error: HTTP {status} {kind}: {message}\n")


def test_load_failure_is_exit_1_with_a_hint(stub: StubTorchServe, run_manage: Callable) -> None:
    stub.fail(
        "POST", "/models", 500, "InternalServerException", "Failed to start workers for model broken version: 1.0"
    )
    rc, out, err = run_manage("register", "broken.mar")
    assert (rc, out) == (1, "")
    assert err.startswith(
        "error: HTTP 500 InternalServerException: Failed to start workers for model broken version: 1.0 ("
    )
    assert "registered without workers" in err
    assert err.count("\n") == 1


def test_bad_token_names_the_key_file(stub: StubTorchServe, run_manage: Callable, key_file: Path) -> None:
    message = "Token Authorization failed. Token either incorrect, expired, or not provided correctly"
    stub.fail("GET", "/models", 400, "InvalidKeyException", message)
    rc, out, err = run_manage("list")
    assert (rc, out) == (2, "")
    assert err.startswith(f"error: HTTP 400 InvalidKeyException: {message} (key from {key_file};")
    assert err.count("\n") == 1


def test_non_json_and_empty_error_bodies(stub: StubTorchServe, run_manage: Callable) -> None:
    stub.routes[("GET", "/models")] = (502, b"upstream down\n")
    assert run_manage("list") == (1, "", "error: HTTP 502: upstream down\n")
    stub.routes[("GET", "/models")] = (413, b"")
    assert run_manage("list") == (2, "", "error: HTTP 413: Request Entity Too Large\n")


def free_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_server_is_one_line(key_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert manage.main(["list", "--management-url", url, "--key-file", str(key_file)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"error: cannot reach TorchServe at {url}/models: connection refused")
    assert captured.err.count("\n") == 1


def test_missing_key_file_is_one_line(stub: StubTorchServe, tmp_path: Path, capsys) -> None:
    missing = tmp_path / "nowhere" / "key_file.json"
    assert manage.main(["list", "--management-url", stub.url, "--key-file", str(missing)]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith(f"error: key file not found: {missing} ")
    assert captured.err.count("\n") == 1
    assert stub.seen == []


# --- predict -------------------------------------------------------------------------------------------


@pytest.fixture
def run_predict(
    stub: StubTorchServe, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> Callable[..., tuple[int, str, str]]:
    def run(*argv: str) -> tuple[int, str, str]:
        rc = predict.main([*argv, "--url", stub.url, "--key-file", str(key_file)])
        out, err = capsys.readouterr()
        return rc, out, err

    return run


def test_predict_inline_json(stub: StubTorchServe, run_predict: Callable) -> None:
    answer = {"predictions": [1], "probabilities": [[0.1, 0.9]]}
    stub.ok("POST", "/predictions/tabular", answer)
    body = '{"inputs": [[0.5, 1.5]]}'
    assert run_predict("tabular", body) == (0, json.dumps(answer, indent=2) + "\n", "")
    (seen,) = stub.seen
    assert (seen.body, seen.headers["content-type"]) == (body.encode(), "application/json")
    assert seen.headers["authorization"] == "Bearer infer-key"


def test_predict_long_inline_json_is_not_taken_for_a_path(stub: StubTorchServe, run_predict: Callable) -> None:
    stub.ok("POST", "/predictions/tabular", {"predictions": [0]})
    body = json.dumps({"inputs": [[1000.123456] * 30]}, indent=2)  # longer than a file name may be
    assert run_predict("tabular", body)[0] == 0
    assert stub.seen[0].body == body.encode()


@pytest.mark.parametrize(
    ("suffix", "ctype"),
    [(".png", "image/png"), (".jpg", "image/jpeg"), (".JPEG", "image/jpeg"), (".npy", "application/x-npy"),
     (".json", "application/json")],
)  # fmt: skip
def test_predict_file_content_types(
    stub: StubTorchServe, run_predict: Callable, tmp_path: Path, suffix: str, ctype: str
) -> None:
    path = tmp_path / f"input{suffix}"
    path.write_bytes(b"\x89PNG-ish bytes")
    stub.ok("POST", "/predictions/mnist/2.0", {"predicted_label": 3})
    assert run_predict("mnist", str(path), "--version", "2.0")[0] == 0
    (seen,) = stub.seen
    assert (seen.body, seen.headers["content-type"]) == (b"\x89PNG-ish bytes", ctype)


def test_predict_handler_error_is_one_line_exit_2(stub: StubTorchServe, run_predict: Callable) -> None:
    stub.fail("POST", "/predictions/mnist", 400, "decode_error", "cannot decode image: truncated PNG")
    assert run_predict("mnist", "{}") == (2, "", "error: HTTP 400 decode_error: cannot decode image: truncated PNG\n")


def test_predict_server_fault_is_exit_1(stub: StubTorchServe, run_predict: Callable) -> None:
    stub.fail("POST", "/predictions/mnist", 503, "InternalServerException", "Prediction failed")
    assert run_predict("mnist", "{}") == (1, "", "error: HTTP 503 InternalServerException: Prediction failed\n")


def test_predict_prints_a_non_json_answer_raw(stub: StubTorchServe, run_predict: Callable) -> None:
    stub.routes[("POST", "/predictions/raw")] = (200, b"plain text answer")
    assert run_predict("raw", "{}") == (0, "plain text answer", "")


@pytest.mark.parametrize(
    ("make_input", "fragment"),
    [
        (lambda d: str(d / "weights.pt"), "unsupported input file type '.pt'"),
        (lambda d: "not json", "INPUT is neither an existing file nor valid JSON"),
    ],
)
def test_predict_bad_input_is_refused_before_sending(
    stub: StubTorchServe, run_predict: Callable, tmp_path: Path, make_input: Callable, fragment: str
) -> None:
    (tmp_path / "weights.pt").write_bytes(b"\0")
    rc, out, err = run_predict("mnist", make_input(tmp_path))
    assert (rc, out) == (2, "")
    assert err.startswith("error: ") and fragment in err
    assert stub.seen == []


def test_read_input_content_type_override(tmp_path: Path) -> None:
    path = tmp_path / "digit.bin"
    path.write_bytes(b"\1\2")
    assert read_input(str(path), "image/png") == (b"\1\2", "image/png")
    with pytest.raises(InputError):
        read_input(str(path))
    assert read_input('{"inputs": []}') == (b'{"inputs": []}', "application/json")
