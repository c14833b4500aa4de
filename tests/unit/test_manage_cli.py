"""The `manage` command line against small fakes of TorchServe 0.12 (tests/unit/fake_torchserve.py): a real
HTTP server on 127.0.0.1 (same error bodies, statuses and paths, as recorded from a real server) and, for
`manage --grpc`, the fake gRPC server.

Checks what each command sends (method, path, query, headers, body) and how it prints answers and errors:
one stderr line `error: HTTP <status> <type>: <message>`, exit 2 for 4xx, 1 otherwise. Both management
clients are also checked against the shared protocol. `predict` is tested in test_predict_cli.py.
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.fake_torchserve import (
    INFERENCE_KEY,
    FakeGrpc,
    FakeManagement,
    StubTorchServe,
    described,
)
from toolkit.cli import manage
from toolkit.client.grpc import GrpcManagementClient
from toolkit.client.management import ManagementApi
from toolkit.client.rest import ManagementClient
from toolkit.torchserve import TOKEN_FAILED


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
    assert run_manage("list", "--json") == (0, json.dumps(models, indent=2) + "\n", "")
    (seen,) = stub.seen
    assert seen.headers["authorization"] == "Bearer mgmt-key"


def test_list_follows_next_page_tokens(stub: StubTorchServe, run_manage: Callable) -> None:
    def pages(query: dict[str, str]) -> tuple[int, bytes]:
        if "next_page_token" not in query:
            return 200, json.dumps({"nextPageToken": "1", "models": [{"modelName": "a"}]}).encode()
        return 200, json.dumps({"models": [{"modelName": "b"}]}).encode()

    stub.routes[("GET", "/models")] = pages
    rc, out, _ = run_manage("list", "--json")
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
    assert len(stub.seen) == 1  # TorchServe started the workers asked for: nothing to correct


def test_register_defaults_send_only_url_and_synchronous(stub: StubTorchServe, run_manage: Callable) -> None:
    stub.ok("POST", "/models", {"status": "Processing worker updates..."}, status=202)
    assert run_manage("register", "tabular.mar", "--no-wait")[0] == 0
    assert stub.seen[0].query == {"url": "tabular.mar", "synchronous": "false"}


# TorchServe 0.12's answer when the archive's model-config (minWorkers 2) wins over initial_workers=1.
REGISTERED_WITH_2 = 'Model "mnist" Version: 2.0 registered with 2 initial workers'
SCALED_TO_1 = "Workers scaled to 1 for model: mnist, version: 2.0"
NOTE_1_NOT_2 = (
    "TorchServe started 2 workers, not --workers 1: the archive's model-config minWorkers/maxWorkers win over"
    " initial_workers (TorchServe issue #2851); scaled to min=max=1"
)


def test_register_workers_flag_wins_over_the_archive(stub: StubTorchServe, run_manage: Callable) -> None:
    stub.ok("POST", "/models", {"status": REGISTERED_WITH_2})
    stub.ok("PUT", "/models/mnist/2.0", {"status": SCALED_TO_1})
    rc, out, err = run_manage("register", "mnist_v2.0.mar", "--workers", "1")
    assert (rc, err) == (0, "")
    assert json.loads(out) == {"status": REGISTERED_WITH_2, "scaled": SCALED_TO_1, "note": NOTE_1_NOT_2}
    assert [(s.method, s.raw_path, s.query) for s in stub.seen] == [
        ("POST", "/models", {"url": "mnist_v2.0.mar", "initial_workers": "1", "synchronous": "true"}),
        ("PUT", "/models/mnist/2.0", {"min_worker": "1", "max_worker": "1", "synchronous": "true"}),
    ]


def test_register_workers_zero_scales_to_zero_over_rest(stub: StubTorchServe, run_manage: Callable) -> None:
    stub.ok("POST", "/models", {"status": REGISTERED_WITH_2})
    stub.ok("PUT", "/models/mnist/2.0", {"status": "Workers scaled to 0 for model: mnist, version: 2.0"})
    rc, out, _ = run_manage("register", "mnist_v2.0.mar", "--workers", "0")
    assert (rc, json.loads(out)["scaled"]) == (0, "Workers scaled to 0 for model: mnist, version: 2.0")
    assert stub.seen[1].query == {"min_worker": "0", "max_worker": "0", "synchronous": "true"}


@pytest.mark.parametrize(
    ("argv", "answer"),
    [
        (["--no-wait", "--workers", "1"], "Processing worker updates..."),  # no worker is up yet: nothing to check
        ([], REGISTERED_WITH_2),  # no --workers: the archive's choice stands
        (["--workers", "1"], "Model mnist registered"),  # not TorchServe 0.12's sentence: nothing to go by
    ],
)
def test_register_leaves_workers_alone_without_a_count_to_correct(
    stub: StubTorchServe, run_manage: Callable, argv: list[str], answer: str
) -> None:
    stub.ok("POST", "/models", {"status": answer})
    assert run_manage("register", "mnist_v2.0.mar", *argv) == (0, json.dumps({"status": answer}, indent=2) + "\n", "")
    assert [s.method for s in stub.seen] == ["POST"]


# --- manage list / versions: a table, or TorchServe's JSON with --json ------------------------------------

TABLE = """\
MODEL    VERSION    DEFAULT    READY/WORKERS    MIN/MAX      BATCH    DELAY MS
-------  ---------  ---------  ---------------  ---------  -------  ----------
m        1.0        yes        1/1              1/1              1         100
m        2.0                   1/2              2/2              8          50
"""


def serve_descriptions(stub: StubTorchServe, name: str) -> None:
    """Routes describing model `name` as the fake gRPC server does: versions 1.0 (the default) and 2.0."""
    stub.ok("GET", f"/models/{name}", [described(name, "1.0")])
    stub.ok("GET", f"/models/{name}/all", [described(name, "1.0"), described(name, "2.0")])


def test_list_prints_a_table_of_every_version(stub: StubTorchServe, run_manage: Callable) -> None:
    stub.ok("GET", "/models", {"models": [{"modelName": "m", "modelUrl": "m.mar"}, {"modelName": "t"}]})
    serve_descriptions(stub, "m")
    serve_descriptions(stub, "t")
    rc, out, err = run_manage("list")
    assert (rc, err) == (0, "")
    rows_of_t = "".join(line.replace("m  ", "t  ", 1) + "\n" for line in TABLE.splitlines()[2:])
    assert out == TABLE + rows_of_t
    assert [s.raw_path for s in stub.seen] == ["/models", "/models/m", "/models/m/all", "/models/t", "/models/t/all"]


def test_versions_prints_a_table(stub: StubTorchServe, run_manage: Callable) -> None:
    serve_descriptions(stub, "m")
    assert run_manage("versions", "m") == (0, TABLE, "")


def test_list_of_no_models_is_the_header(stub: StubTorchServe, run_manage: Callable) -> None:
    stub.ok("GET", "/models", {"models": []})
    header = TABLE.splitlines()[0].split()
    rc, out, _ = run_manage("list")
    assert (rc, out.splitlines()[0].split(), len(out.splitlines())) == (0, header, 2)


def test_table_shows_what_torchserve_leaves_out_as_a_question_mark(stub: StubTorchServe, run_manage: Callable) -> None:
    stub.ok("GET", "/models/m", [{"modelName": "m", "modelVersion": "1.0"}])
    stub.ok("GET", "/models/m/all", [{"modelName": "m", "modelVersion": "1.0"}])
    rc, out, _ = run_manage("versions", "m")
    assert (rc, out.splitlines()[2].split()) == (0, ["m", "1.0", "yes", "0/0", "?/?", "?", "?"])


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
        (["versions", "mnist", "--json"], "GET", "/models/mnist/all", {}),
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
    assert manage.main(["--management-url", stub.url, "--key-file", str(key_file), "list", "--json"]) == 0
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


@pytest.mark.parametrize("client_class", [ManagementClient, GrpcManagementClient])
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
]


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
    stub.fail("GET", "/models", 400, "InvalidKeyException", TOKEN_FAILED)
    rc, out, err = run_manage("list")
    assert (rc, out) == (2, "")
    assert err.startswith(f"error: HTTP 400 InvalidKeyException: {TOKEN_FAILED} (key from {key_file};")
    assert err.count("\n") == 1


def test_non_json_and_empty_error_bodies(stub: StubTorchServe, run_manage: Callable) -> None:
    stub.routes[("GET", "/models")] = (502, b"upstream down\n")
    assert run_manage("list") == (1, "", "error: HTTP 502: upstream down\n")
    stub.routes[("GET", "/models")] = (413, b"")
    assert run_manage("list") == (2, "", "error: HTTP 413: Request Entity Too Large\n")


def test_unreachable_server_is_one_line(key_file: Path, free_port: int, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port}"
    assert manage.main(["list", "--management-url", url, "--key-file", str(key_file)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"error: cannot reach TorchServe at {url}/models: connection refused"
        " (is TorchServe running? start it with `make serve`)\n"
    )


def test_missing_key_file_is_one_line(stub: StubTorchServe, tmp_path: Path, capsys) -> None:
    missing = tmp_path / "nowhere" / "key_file.json"
    assert manage.main(["list", "--management-url", stub.url, "--key-file", str(missing)]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith(f"error: key file not found: {missing} ")
    assert captured.err.count("\n") == 1
    assert stub.seen == []


# --- manage --grpc, against the fake TorchServe gRPC server ----------------------------------------------


@pytest.fixture
def run_manage_grpc(
    fake_grpc: FakeGrpc, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> Callable[..., tuple[int, str, str]]:
    """manage.main(argv + `--grpc --grpc-address <fake> --key-file <keys>`) -> (exit code, stdout, stderr)."""

    def run(*argv: str) -> tuple[int, str, str]:
        rc = manage.main([*argv, "--grpc", "--grpc-address", fake_grpc.address, "--key-file", str(key_file)])
        out, err = capsys.readouterr()
        return rc, out, err

    return run


def printed(answer: object) -> str:
    """What manage prints for a JSON answer."""
    return json.dumps(answer, indent=2) + "\n"


def test_manage_grpc_register_maps_every_option(run_manage_grpc: Callable, fake_management: FakeManagement) -> None:
    argv = ["mnist.mar", "--name", "m", "--batch-size", "4", "--max-batch-delay-ms", "50", "--workers", "2"]
    rc, out, err = run_manage_grpc("register", *argv, "--response-timeout-s", "30")
    assert (rc, out, err) == (0, printed({"status": 'Model "m" Version: 1.0 registered with 2 initial workers'}), "")
    assert fake_management.seen == [
        {
            "RegisterModelRequest": {
                "url": "mnist.mar",
                "model_name": "m",
                "batch_size": 4,
                "max_batch_delay": 50,
                "initial_workers": 2,
                "response_timeout": 30,
                "synchronous": True,
            }
        }
    ]
    assert run_manage_grpc("register", "tabular.mar", "--no-wait") == (
        0,
        printed({"status": "Processing worker updates..."}),
        "",
    )
    assert fake_management.seen[-1] == {"RegisterModelRequest": {"url": "tabular.mar"}}  # synchronous false: default


def test_manage_grpc_register_workers_flag_wins_over_the_archive(
    run_manage_grpc: Callable, fake_management: FakeManagement
) -> None:
    fake_management.archive_min_workers = {"mnist_v2.0.mar": 2}
    rc, out, err = run_manage_grpc("register", "mnist_v2.0.mar", "--name", "mnist", "--workers", "1")
    assert (rc, err) == (0, "")
    assert json.loads(out) == {
        "status": 'Model "mnist" Version: 1.0 registered with 2 initial workers',
        "scaled": "Workers scaled to 1 for model: mnist, version: 1.0",
        "note": NOTE_1_NOT_2,
    }
    assert fake_management.seen == [
        {"RegisterModelRequest": {"url": "mnist_v2.0.mar", "model_name": "mnist", "initial_workers": 1,
                                  "synchronous": True}},
        {"ScaleWorkerRequest": {"model_name": "mnist", "model_version": "1.0", "min_worker": 1, "max_worker": 1,
                                "synchronous": True}},
    ]


def test_manage_grpc_refuses_zero_workers_before_sending(
    run_manage_grpc: Callable, fake_management: FakeManagement
) -> None:
    rc, out, err = run_manage_grpc("register", "mnist.mar", "--workers", "0")
    assert (rc, out) == (2, "")
    assert err.startswith("error: initial_workers=0 cannot be sent over gRPC")
    assert err.count("\n") == 1
    assert fake_management.seen == []


@pytest.mark.parametrize(
    ("argv", "request_sent", "answer"),
    [
        (["unregister", "m"], {"UnregisterModelRequest": {"model_name": "m"}}, {"status": 'Model "m" unregistered'}),
        (
            ["unregister", "m", "--version", "1.0"],
            {"UnregisterModelRequest": {"model_name": "m", "model_version": "1.0"}},
            {"status": 'Model "m" unregistered'},
        ),
        (
            ["scale", "m", "--min", "2", "--max", "3", "--version", "2.0", "--no-wait"],
            {"ScaleWorkerRequest": {"model_name": "m", "model_version": "2.0", "min_worker": 2, "max_worker": 3}},
            {"status": "Processing worker updates..."},
        ),
        (
            ["set-default", "m", "2.0"],
            {"SetDefaultRequest": {"model_name": "m", "model_version": "2.0"}},
            {"status": 'Default version successfully updated for model "m" to "2.0"'},
        ),
        (
            ["describe", "m", "--version", "2.0"],
            {"DescribeModelRequest": {"model_name": "m", "model_version": "2.0"}},
            [described("m", "2.0")],
        ),
        (["list", "--json"], {"ListModelsRequest": {"limit": 100}}, [{"modelName": "m", "modelUrl": "m.mar"}]),
    ],
)
def test_manage_grpc_commands_send_and_print(
    run_manage_grpc: Callable, fake_management: FakeManagement, argv: list[str], request_sent: dict, answer: object
) -> None:
    assert run_manage_grpc(*argv) == (0, printed(answer), "")
    assert fake_management.seen == [request_sent]


@pytest.mark.parametrize("argv", [["describe", "m", "--all"], ["versions", "m", "--json"]])
def test_manage_grpc_every_version_is_describe_all(
    run_manage_grpc: Callable, fake_management: FakeManagement, argv: list[str]
) -> None:
    rc, out, _ = run_manage_grpc(*argv)
    assert rc == 0
    assert [d["modelVersion"] for d in json.loads(out)] == ["1.0", "2.0"]
    assert fake_management.seen == [{"DescribeModelRequest": {"model_name": "m", "model_version": "all"}}]


def test_manage_grpc_tables_are_the_rest_tables(run_manage_grpc: Callable, fake_management: FakeManagement) -> None:
    """Same descriptions, same table, whatever the protocol (TABLE is the REST one)."""
    assert run_manage_grpc("list") == (0, TABLE, "")
    assert run_manage_grpc("versions", "m") == (0, TABLE, "")
    describe_default = {"DescribeModelRequest": {"model_name": "m"}}
    describe_all = {"DescribeModelRequest": {"model_name": "m", "model_version": "all"}}
    assert fake_management.seen == [
        {"ListModelsRequest": {"limit": 100}},
        describe_default,
        describe_all,
        describe_default,
        describe_all,
    ]


@pytest.mark.usefixtures("fake_management")
def test_manage_grpc_options_before_the_command(fake_grpc: FakeGrpc, key_file: Path, capsys) -> None:
    argv = ["--grpc", "--grpc-address", fake_grpc.address, "--key-file", str(key_file), "--timeout", "5", "list"]
    assert manage.main([*argv, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"modelName": "m", "modelUrl": "m.mar"}]


@pytest.mark.usefixtures("fake_management")
def test_manage_grpc_server_errors_are_one_line(
    fake_grpc: FakeGrpc, run_manage_grpc: Callable, tmp_path: Path, capsys
) -> None:
    assert run_manage_grpc("unregister", "missing") == (
        2,
        "",
        "error: HTTP 404 ModelNotFoundException: Model not found: missing\n",
    )
    wrong = tmp_path / "wrong_keys.json"
    wrong.write_text(json.dumps({"management": {"key": "wrong"}, "inference": {"key": INFERENCE_KEY}}))
    rc = manage.main(["list", "--grpc", "--grpc-address", fake_grpc.address, "--key-file", str(wrong)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith(f"error: HTTP 403 PERMISSION_DENIED: {TOKEN_FAILED} (key from {wrong};")
    assert err.count("\n") == 1


def test_manage_grpc_refuses_scale_to_zero_before_sending(
    run_manage_grpc: Callable, fake_management: FakeManagement
) -> None:
    rc, out, err = run_manage_grpc("scale", "m", "--min", "0", "--max", "1")
    assert (rc, out) == (2, "")
    assert err.startswith("error: need 1 <= min_workers <= max_workers over gRPC, got 0, 1")
    assert err.count("\n") == 1
    assert fake_management.seen == []


def test_manage_grpc_unreachable_is_the_rest_line(key_file: Path, free_port: int, capsys) -> None:
    address = f"127.0.0.1:{free_port}"
    assert manage.main(["--grpc", "--grpc-address", address, "--key-file", str(key_file), "list"]) == 1
    assert capsys.readouterr() == (
        "",
        f"error: cannot reach TorchServe's gRPC API at {address}: connection refused"
        " (is TorchServe running? start it with `make serve`)\n",
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--grpc", "--management-url", "http://127.0.0.1:8081", "list"],
        ["--grpc-address", "127.0.0.1:7071", "list"],
    ],
)
def test_manage_refuses_the_other_protocols_address(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as info:
        manage.main(argv)
    assert info.value.code == 2
    assert "--grpc" in capsys.readouterr().err


def test_manage_grpc_without_generated_stubs_is_one_line(
    key_file: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setitem(sys.modules, "toolkit.client.grpc", None)  # as if scripts/gen_grpc.py never ran
    assert manage.main(["--grpc", "--key-file", str(key_file), "list"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --grpc is unavailable: ")
    assert err.count("\n") == 1
