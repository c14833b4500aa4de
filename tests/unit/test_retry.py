"""Retrying a busy server (toolkit.client.retry) and the "server busy: model queue full" error, through the REST
and gRPC inference clients and `predict`, against the fakes of tests/unit/fake_torchserve.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.fake_torchserve import FULL_QUEUE, INFERENCE_KEY, FakeGrpc, StubTorchServe, error_body
from toolkit.cli import predict
from toolkit.client.error_body import busy_or_same, is_busy
from toolkit.client.grpc import GrpcInferenceClient
from toolkit.client.rest import InferenceClient, ManagementClient
from toolkit.client.retry import RetryPolicy
from toolkit.errors import ServerBusyError, ServerError
from toolkit.torchserve import PREDICTION_FAILED

FAST = RetryPolicy(tries=4, total_s=5.0, first_wait_s=0.001, max_wait_s=0.002)


@pytest.mark.parametrize(
    ("status", "message", "busy"),
    [(503, FULL_QUEUE, True), (503, FULL_QUEUE.upper(), True), (429, "queue full", True),
     (500, FULL_QUEUE, True),  # TorchServe 0.12's gRPC answer: INTERNAL, InternalServerException
     (503, PREDICTION_FAILED.text(), False), (500, "Prediction failed", False), (400, FULL_QUEUE, False)],
)
def test_is_busy(status: int, message: str, busy: bool) -> None:
    assert is_busy(status, message) is busy
    assert isinstance(busy_or_same(ServerError(status, message, "X")), ServerBusyError) is busy


def test_busy_error_says_queue_full_not_no_worker() -> None:
    exc = ServerBusyError(503, FULL_QUEUE, "ServiceUnavailableException", attempts=3, waited_s=1.25)
    assert str(exc).startswith("server busy: model queue full (HTTP 503; gave up after 3 tries in 1.2 s")
    assert exc.message == FULL_QUEUE and exc.exit_code == 1 and isinstance(exc, ServerError)


def busy_then(answers: list[object]):
    """An attempt function raising ServerBusyError for each None in `answers`, else returning the answer."""
    calls = iter(answers)

    def attempt() -> object:
        answer = next(calls)
        if answer is None:
            raise ServerBusyError(503, FULL_QUEUE)
        return answer

    return attempt


def test_retries_until_answered_with_capped_jittered_waits() -> None:
    waits: list[float] = []
    policy = RetryPolicy(tries=6, total_s=100.0, first_wait_s=0.1, max_wait_s=0.3)
    assert policy.call(busy_then([None] * 5 + ["ok"]), sleep=waits.append) == "ok"
    caps = [0.1, 0.2, 0.3, 0.3, 0.3]  # min(max_wait_s, first_wait_s * 2**k)
    assert len(waits) == 5 and all(0 <= w <= cap + 1e-9 for w, cap in zip(waits, caps, strict=True)), waits


def test_gives_up_after_tries_with_the_count() -> None:
    with pytest.raises(ServerBusyError) as info:
        FAST.call(busy_then([None] * 10), sleep=lambda s: None)
    assert info.value.attempts == 4


def test_gives_up_when_total_time_would_pass() -> None:
    policy = RetryPolicy(tries=1000, total_s=0.05, first_wait_s=0.02, max_wait_s=0.02)
    with pytest.raises(ServerBusyError) as info:
        policy.call(busy_then([None] * 1000))
    # full jitter: how many tries fit in 0.05 s is random; that it stopped well before 1000 is not
    assert 1 < info.value.attempts < 1000 and info.value.waited_s < 0.1


def test_off_and_other_errors_are_not_retried() -> None:
    with pytest.raises(ServerBusyError) as info:
        RetryPolicy.off().call(busy_then([None, "never"]))
    assert info.value.attempts == 1
    calls = []

    def failing() -> None:
        calls.append(1)
        raise ServerError(503, "Prediction failed", "InternalServerException")

    with pytest.raises(ServerError):
        FAST.call(failing)
    assert len(calls) == 1


def test_rest_predict_retries_a_full_queue(stub: StubTorchServe) -> None:
    answers = iter([(503, error_body(503, "ServiceUnavailableException", FULL_QUEUE))] * 2 + [(200, b'{"ok": 1}')])
    stub.routes[("POST", "/predictions/mnist")] = lambda query: next(answers)
    with InferenceClient(stub.url, INFERENCE_KEY, retry=FAST) as client:
        assert client.predict("mnist", b"{}", "application/json") == (200, {"ok": 1})
    assert len(stub.seen) == 3


def test_rest_management_503_is_not_busy(stub: StubTorchServe) -> None:
    stub.fail("PUT", "/models/mnist", 503, "ServiceUnavailableException", FULL_QUEUE)
    with ManagementClient(stub.url, "k") as client, pytest.raises(ServerError) as info:
        client.scale("mnist", 1, 1)
    assert not isinstance(info.value, ServerBusyError) and len(stub.seen) == 1


def test_grpc_predict_retries_then_says_busy(fake_grpc: FakeGrpc) -> None:
    with (
        GrpcInferenceClient(fake_grpc.address, INFERENCE_KEY, timeout_s=10, retry=FAST) as client,
        pytest.raises(ServerBusyError) as info,
    ):
        client.predict("full", b"x")
    assert (info.value.status, info.value.attempts) == (503, 4)


@pytest.mark.parametrize(("flags", "tries"), [(["--no-retry"], 1), (["--tries", "3", "--retry-time", "5"], 3)])
def test_predict_cli_retries_and_prints_server_busy(
    stub: StubTorchServe, key_file: Path, capsys: pytest.CaptureFixture[str], flags: list[str], tries: int
) -> None:
    stub.fail("POST", "/predictions/mnist", 503, "ServiceUnavailableException", FULL_QUEUE)
    rc = predict.main(["mnist", json.dumps({"image": [[0]]}), "--url", stub.url, "--key-file", str(key_file), *flags])
    out, err = capsys.readouterr()
    assert (rc, out, len(stub.seen)) == (1, "", tries)
    assert err.startswith("error: server busy: model queue full (HTTP 503"), err
    assert FULL_QUEUE not in err and err.count("\n") == 1, err
