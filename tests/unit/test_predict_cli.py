"""The `predict` command line against small fakes of TorchServe 0.12 (tests/unit/fake_torchserve.py): the
REST stub, and the fake gRPC server for `predict --grpc`. Checks what is sent (body, Content-Type, key) and
how answers and errors are printed: one stderr line `error: ...`, exit 2 for 4xx or a bad input, 1 otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.fake_torchserve import INFERENCE_KEY, FakeGrpc, StubTorchServe
from toolkit.cli import predict
from toolkit.cli.predict import InputError, read_input


def test_predict_inline_json(stub: StubTorchServe, run_predict: Callable) -> None:
    answer = {"predictions": [1], "probabilities": [[0.1, 0.9]]}
    stub.ok("POST", "/predictions/tabular", answer)
    body = '{"inputs": [[0.5, 1.5]]}'
    assert run_predict("tabular", body) == (0, json.dumps(answer, indent=2) + "\n", "")
    (seen,) = stub.seen
    assert (seen.body, seen.headers["content-type"]) == (body.encode(), "application/json")
    assert seen.headers["authorization"] == f"Bearer {INFERENCE_KEY}"


def test_predict_long_inline_json_is_not_taken_for_a_path(stub: StubTorchServe, run_predict: Callable) -> None:
    stub.ok("POST", "/predictions/tabular", {"predictions": [0]})
    body = json.dumps({"inputs": [[1000.123456] * 30]}, indent=2)  # longer than a file name may be
    assert run_predict("tabular", body)[0] == 0
    assert stub.seen[0].body == body.encode()


@pytest.mark.parametrize(
    ("suffix", "ctype"),
    [(".png", "image/png"), (".jpg", "image/jpeg"), (".JPEG", "image/jpeg"), (".npy", "application/x-npy"),
     (".json", "application/json")],
)
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


def test_predict_grpc_sends_the_inference_key_and_prints_the_answer(
    fake_grpc: FakeGrpc, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["mnist", '{"image": []}', "--version", "2.0", "--grpc", "--grpc-address", fake_grpc.address]
    assert predict.main([*argv, "--key-file", str(key_file)]) == 0  # the fake refuses any other key
    answer = {"model": "mnist", "version": "2.0", "input": {"data": '{"image": []}'}}
    assert capsys.readouterr() == (json.dumps(answer, indent=2) + "\n", "")


def test_predict_grpc_errors_are_the_rest_lines(
    fake_grpc: FakeGrpc, key_file: Path, free_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    conn = ["--grpc", "--key-file", str(key_file), "--grpc-address"]
    assert predict.main(["bad", "{}", *conn, fake_grpc.address]) == 2
    assert capsys.readouterr() == ("", "error: HTTP 400 decode_error: not an image\n")
    assert predict.main(["mnist", "{}", *conn, f"127.0.0.1:{free_port}"]) == 1
    assert capsys.readouterr() == (
        "",
        f"error: cannot reach TorchServe's gRPC API at 127.0.0.1:{free_port}: connection refused"
        " (is TorchServe running? start it with `make serve`)\n",
    )
