"""toolkit.torchserve's table of TorchServe's frontend errors, read back by the client as the frontend means
each one: its status and type, its message, busy or not, and the CLI's hint for a refused token."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from toolkit.cli.common import error_line
from toolkit.client.error_body import busy_or_same, error_from_body, parse_error_body
from toolkit.errors import ServerBusyError, ServerError
from toolkit.torchserve import (
    BATCH_MISMATCH,
    INVALID_KEY,
    MODEL_NOT_FOUND,
    NO_WORKER,
    OUT_OF_RESOURCES,
    PREDICTION_FAILED,
    RESOURCE_NOT_FOUND,
    TOKEN_FAILED,
    VERSION_NOT_FOUND,
    FrontendError,
)

FIELDS = {"model": "mnist", "version": "9.9"}
TABLE = [MODEL_NOT_FOUND, VERSION_NOT_FOUND, RESOURCE_NOT_FOUND, INVALID_KEY, NO_WORKER, PREDICTION_FAILED,
         BATCH_MISMATCH, OUT_OF_RESOURCES]  # fmt: skip


def test_each_body_is_torchserve_s_error_object() -> None:
    assert json.loads(MODEL_NOT_FOUND.body(model="nope")) == {
        "code": 404, "type": "ModelNotFoundException", "message": "Model not found: nope"}
    assert json.loads(VERSION_NOT_FOUND.body(**FIELDS)) == {
        "code": 404, "type": "ModelVersionNotFoundException",
        "message": "Model version: 9.9 does not exist for model: mnist"}  # fmt: skip
    assert json.loads(INVALID_KEY.body()) == {"code": 400, "type": "InvalidKeyException", "message": TOKEN_FAILED}
    assert json.loads(NO_WORKER.body(model="mnist"))["message"] == (
        'Model "mnist" has no worker to serve inference request. Please use scale workers API to add workers.')
    assert [(e.status, e.type, e.text()) for e in (PREDICTION_FAILED, OUT_OF_RESOURCES)] == [
        (503, "InternalServerException", "Prediction failed"), (507, "InternalServerException", "Out of resources")]


def test_only_the_busy_answer_carries_retry_after() -> None:
    assert NO_WORKER.headers() == {"Retry-After": "1"}
    assert [e for e in TABLE if e.headers()] == [NO_WORKER]


def test_a_template_field_left_out_is_named() -> None:
    with pytest.raises(KeyError, match="model"):
        MODEL_NOT_FOUND.body()


@pytest.mark.parametrize("error", TABLE, ids=lambda e: f"{e.status}-{e.type}-{e.message[:20]}")
def test_the_client_reads_every_answer_back_as_sent(error: FrontendError) -> None:
    body = error.body(**FIELDS)
    assert parse_error_body(body) is not None
    read = error_from_body(error.status, body)
    assert (read.status, read.kind, read.message) == (error.status, error.type, error.text(**FIELDS))
    assert error.matches(read.status, read.kind)
    busy = busy_or_same(read)
    assert isinstance(busy, ServerBusyError) is (error is NO_WORKER), "only a full queue is retried"


def test_the_busy_answer_is_recognised_over_grpc_too_where_its_type_is_lost() -> None:
    grpc_answer = ServerError(500, NO_WORKER.text(model="mnist"), "InternalServerException")
    assert isinstance(busy_or_same(grpc_answer), ServerBusyError)


def test_a_refused_token_gets_the_key_file_hint_over_rest_and_grpc(tmp_path: Path) -> None:
    key_file = tmp_path / "key_file.json"
    rest = error_from_body(INVALID_KEY.status, INVALID_KEY.body())
    grpc = ServerError(403, TOKEN_FAILED, "PERMISSION_DENIED")
    for refused in (rest, grpc):
        assert error_line(refused, key_file).endswith(
            f"(key from {key_file}; keys change at every server start and expire)"), refused
    other = error_from_body(MODEL_NOT_FOUND.status, MODEL_NOT_FOUND.body(model="x"))
    assert error_line(other, key_file) == "error: HTTP 404 ModelNotFoundException: Model not found: x"
