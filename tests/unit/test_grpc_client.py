"""The gRPC clients: error mapping (gRPC status -> ServerError / ServerUnreachableError) and
GrpcInferenceClient / GrpcManagementClient against the in-process fake TorchServe gRPC server
(tests/unit/fake_torchserve.py: real gRPC on a loopback port, answering as TorchServe 0.12 was observed to).
`manage --grpc` is tested in test_manage_cli.py, the stubs' wire format in test_grpc_wire.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import pytest

from tests.unit.fake_torchserve import (
    FULL_QUEUE,
    INFERENCE_KEY,
    MANAGEMENT_KEY,
    FakeGrpc,
    FakeManagement,
    described,
)
from toolkit.client.grpc import (
    GrpcInferenceClient,
    GrpcManagementClient,
    check_prediction,
    error_from_status,
    http_status_for,
    is_unreachable,
    split_details,
)
from toolkit.client.grpc_gen import inference_pb2
from toolkit.client.management import Registration
from toolkit.errors import EXIT_FAILURE, ServerError, ServerUnreachableError, UnsupportedRequestError
from toolkit.torchserve import TOKEN_FAILED

# ---- error mapping -----------------------------------------------------------------------------------

SC = grpc.StatusCode


@pytest.mark.parametrize(
    ("code", "details", "expected"),
    [
        (SC.PERMISSION_DENIED, TOKEN_FAILED, (403, TOKEN_FAILED, "PERMISSION_DENIED")),
        (
            SC.INTERNAL,
            "Model not found: nope\norg.pytorch.serve.archive.model.ModelNotFoundException",
            (404, "Model not found: nope", "ModelNotFoundException"),
        ),
        (
            SC.INTERNAL,
            "Model version: 9 does not exist for model: m\norg.pytorch.serve.archive.model."
            "ModelVersionNotFoundException",
            (404, "Model version: 9 does not exist for model: m", "ModelVersionNotFoundException"),
        ),
        (
            SC.INTERNAL,
            "Parameter model_name is required.\nBadRequestException.()",
            (400, "Parameter model_name is required.", "BadRequestException"),
        ),
        (
            SC.INTERNAL,
            "Worker died.\norg.pytorch.serve.http.InternalServerException",
            (500, "Worker died.", "InternalServerException"),
        ),
        (
            SC.NOT_FOUND,
            "Model not found at: x.mar\norg.pytorch.serve.archive.model.ModelNotFoundException",
            (404, "Model not found at: x.mar", "ModelNotFoundException"),
        ),
        (SC.UNKNOWN, "", (500, "gRPC UNKNOWN without details", "UNKNOWN")),
        (SC.UNAVAILABLE, "failed to connect", (503, "failed to connect", "UNAVAILABLE")),
        (SC.DEADLINE_EXCEEDED, "Deadline Exceeded", (504, "Deadline Exceeded", "DEADLINE_EXCEEDED")),
        (SC.ABORTED, "conflict", (409, "conflict", "ABORTED")),
        (SC.RESOURCE_EXHAUSTED, "Received message larger than max (9 vs. 4)", (413, None, "RESOURCE_EXHAUSTED")),
        (SC.RESOURCE_EXHAUSTED, "queue full", (429, "queue full", "RESOURCE_EXHAUSTED")),
        (SC.DATA_LOSS, "x", (500, "x", "DATA_LOSS")),
    ],
)
def test_error_from_status(code: grpc.StatusCode, details: str, expected: tuple) -> None:
    status, message, kind = expected
    err = error_from_status(code, details)
    assert (err.status, err.kind) == (status, kind)
    assert err.message == (details if message is None else message)


# HTTP status -> the gRPC code TorchServe's frontend (GRPCUtils.getGRPCStatusCode) sends for it.
HTTP_TO_GRPC = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    413: "RESOURCE_EXHAUSTED",
    429: "RESOURCE_EXHAUSTED",
    503: "UNAVAILABLE",
}


@pytest.mark.parametrize(("http_status", "code_name"), sorted(HTTP_TO_GRPC.items()))
def test_http_status_round_trips_through_grpc_codes(http_status: int, code_name: str) -> None:
    code = SC[code_name]
    details = "Request too large" if http_status == 413 else ""
    assert http_status_for(code, details) == http_status


def test_split_details_keeps_plain_text() -> None:
    assert split_details("no class here\nsecond line") == ("no class here\nsecond line", "")
    assert split_details("msg\nFooError") == ("msg", "FooError")


def test_check_prediction_raises_error_bodies_and_statuses() -> None:
    ok = inference_pb2.PredictionResponse(prediction=b'{"predictions": [1]}')
    assert check_prediction(ok) == b'{"predictions": [1]}'
    body = json.dumps({"code": 413, "type": "payload_too_large", "message": "2 MB > 1 MB"}).encode()
    with pytest.raises(ServerError) as info:
        check_prediction(inference_pb2.PredictionResponse(prediction=body))
    assert (info.value.status, info.value.kind, info.value.message) == (413, "payload_too_large", "2 MB > 1 MB")
    streamed = inference_pb2.PredictionResponse(sequence_id="s")
    streamed.status.code = SC.NOT_FOUND.value[0]
    streamed.status.message = "Model not found: m\norg.pytorch.serve.archive.model.ModelNotFoundException"
    with pytest.raises(ServerError) as info:
        check_prediction(streamed)
    assert (info.value.status, info.value.kind) == (404, "ModelNotFoundException")


# gRPC core's details for calls no server answered, as grpcio 1.85 words them (recorded).
NO_SERVER = [
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:59733: Failed to connect to remote host:"
    " Connection refused",
    "errors resolving nosuchhost.invalid:7070: [field:hostname lookup error:address lookup failed for"
    " nosuchhost.invalid:7070: Domain name not found]",
    "Socket closed",
    "recvmsg:Connection reset by peer",
]


@pytest.mark.parametrize("details", NO_SERVER)
def test_unavailable_without_a_server_is_unreachable(details: str) -> None:
    assert is_unreachable(SC.UNAVAILABLE, details)


@pytest.mark.parametrize(
    ("code", "details"),
    [
        (SC.UNAVAILABLE, FULL_QUEUE),  # TorchServe's own 503
        (SC.UNAVAILABLE, ""),
        (SC.UNAVAILABLE, None),
        (SC.DEADLINE_EXCEEDED, "Deadline Exceeded"),  # a server too slow is not an absent one
        (SC.INTERNAL, "failed to connect"),  # only UNAVAILABLE means no server
    ],
)
def test_a_server_answer_is_not_unreachable(code: grpc.StatusCode, details: str | None) -> None:
    assert not is_unreachable(code, details)


# ---- the clients against the fake TorchServe gRPC server ---------------------------------------------


@pytest.fixture
def inference(fake_grpc: FakeGrpc) -> Iterator[GrpcInferenceClient]:
    with GrpcInferenceClient(fake_grpc.address, INFERENCE_KEY, timeout_s=10) as client:
        yield client


@pytest.fixture
def management(fake_grpc: FakeGrpc, fake_management: FakeManagement) -> Iterator[GrpcManagementClient]:
    with GrpcManagementClient(fake_grpc.address, MANAGEMENT_KEY, timeout_s=10) as client:
        yield client


def test_ping_sends_inference_key(inference: GrpcInferenceClient, fake_grpc: FakeGrpc) -> None:
    assert inference.ping() == "Healthy"
    with GrpcInferenceClient(fake_grpc.address, MANAGEMENT_KEY) as wrong, pytest.raises(ServerError) as info:
        wrong.ping()
    assert (info.value.status, info.value.message) == (403, TOKEN_FAILED)


def test_predict_sends_model_version_and_named_input(inference: GrpcInferenceClient) -> None:
    answer = json.loads(inference.predict("mnist", b"abc", version="2.0", input_name="body"))
    assert answer == {"model": "mnist", "version": "2.0", "input": {"body": "abc"}}
    assert json.loads(inference.predict("mnist", b"x"))["input"] == {"data": "x"}


def test_predict_raises_handler_error_body(inference: GrpcInferenceClient) -> None:
    with pytest.raises(ServerError) as info:
        inference.predict("bad", b"x")
    assert (info.value.status, info.value.kind, info.value.message) == (400, "decode_error", "not an image")


def test_predict_unknown_model_is_404(inference: GrpcInferenceClient) -> None:
    with pytest.raises(ServerError) as info:
        inference.predict("missing", b"x")
    assert (info.value.status, info.value.kind, info.value.message) == (
        404,
        "ModelNotFoundException",
        "Model not found: missing",
    )


def test_servers_own_unavailable_stays_a_503(inference: GrpcInferenceClient) -> None:
    with pytest.raises(ServerError) as info:
        inference.predict("full", b"x")
    assert (info.value.status, info.value.kind, info.value.message) == (503, "UNAVAILABLE", FULL_QUEUE)
    assert not isinstance(info.value, ServerUnreachableError)


def test_missing_token_is_refused(fake_grpc: FakeGrpc, fake_management: FakeManagement) -> None:
    with GrpcInferenceClient(fake_grpc.address, None) as anonymous, pytest.raises(ServerError) as info:
        anonymous.predict("mnist", b"x")
    assert (info.value.status, info.value.kind) == (403, "PERMISSION_DENIED")
    with GrpcManagementClient(fake_grpc.address, None) as anonymous, pytest.raises(ServerError) as info:
        anonymous.models()
    assert (info.value.status, info.value.kind, info.value.message) == (403, "PERMISSION_DENIED", TOKEN_FAILED)
    assert fake_management.seen == []


def test_deadline_becomes_504(fake_grpc: FakeGrpc) -> None:
    hasty = GrpcInferenceClient(fake_grpc.address, INFERENCE_KEY, timeout_s=0.2)
    with hasty, pytest.raises(ServerError) as info:
        hasty.predict("slow", b"x")
    assert (info.value.status, info.value.kind) == (504, "DEADLINE_EXCEEDED")


@pytest.mark.parametrize(
    ("client_class", "call"),
    [
        (GrpcInferenceClient, lambda c: c.ping()),
        (GrpcInferenceClient, lambda c: list(c.stream_predict("m", b"x"))),
        (GrpcManagementClient, lambda c: c.models()),
    ],
    ids=["ping", "stream_predict", "models"],
)
def test_unreachable_server_is_server_unreachable_error_like_rest(free_port: int, client_class: type, call) -> None:
    address = f"127.0.0.1:{free_port}"
    with client_class(address, "key", 5) as client, pytest.raises(ServerUnreachableError) as info:
        call(client)
    assert str(info.value) == f"cannot reach TorchServe's gRPC API at {address}: connection refused"
    assert isinstance(info.value, ConnectionError)
    assert info.value.exit_code == EXIT_FAILURE


def test_stream_predict_yields_parts_in_order_and_raises_error_parts(inference: GrpcInferenceClient) -> None:
    parts = list(inference.stream_predict("mnist", b"abc", version="1.0"))
    assert [json.loads(p) for p in parts] == [
        {"part": 1},
        {"model": "mnist", "version": "1.0", "input": {"data": "abc"}},
    ]
    stream = inference.stream_predict("bad", b"x")
    assert json.loads(next(stream)) == {"part": 1}
    with pytest.raises(ServerError) as info:
        next(stream)
    assert info.value.kind == "decode_error"
    with pytest.raises(ServerError) as info:
        list(inference.stream_predict("missing", b"x"))
    assert info.value.status == 404


def test_register_sends_settings_with_management_key(
    management: GrpcManagementClient, fake_management: FakeManagement
) -> None:
    answer = management.register("m.mar", model_name="m", batch_size=4, max_batch_delay_ms=50, response_timeout_s=30)
    assert answer == {"status": 'Model "m" Version: 1.0 registered with 1 initial workers'}
    sent = {
        "RegisterModelRequest": {
            "url": "m.mar",
            "model_name": "m",
            "batch_size": 4,
            "max_batch_delay": 50,
            "response_timeout": 30,
            "synchronous": True,
        }
    }
    assert fake_management.seen == [sent]
    registration = Registration("m.mar", model_name="m", batch_size=4, max_batch_delay_ms=50, response_timeout_s=30)
    assert management.register(registration) == answer
    assert fake_management.seen == [sent, sent]


def test_register_options_are_registration_fields(
    management: GrpcManagementClient, fake_management: FakeManagement
) -> None:
    with pytest.raises(TypeError, match="workers"):
        management.register("m.mar", workers=2)
    assert Registration.of(Registration("a.mar"), initial_workers=2) == Registration("a.mar", initial_workers=2)
    assert fake_management.seen == []


def test_status_calls_answer_like_rest(management: GrpcManagementClient, fake_management: FakeManagement) -> None:
    assert management.scale("m", 1, 3, version="2.0") == {"status": "Workers scaled to 1 for model: m, version: 2.0"}
    assert management.set_default("m", "2.0") == {
        "status": 'Default version successfully updated for model "m" to "2.0"'
    }
    assert management.unregister("m") == {"status": 'Model "m" unregistered'}
    assert fake_management.seen == [
        {
            "ScaleWorkerRequest": {
                "model_name": "m",
                "model_version": "2.0",
                "min_worker": 1,
                "max_worker": 3,
                "synchronous": True,
            }
        },
        {"SetDefaultRequest": {"model_name": "m", "model_version": "2.0"}},
        {"UnregisterModelRequest": {"model_name": "m"}},
    ]
    with pytest.raises(ServerError) as info:
        management.unregister("missing")
    assert (info.value.status, info.value.kind) == (404, "ModelNotFoundException")


def test_describe_and_versions_parse_json(management: GrpcManagementClient, fake_management: FakeManagement) -> None:
    workers = [{"id": "9000", "status": "READY"}]
    assert management.describe("m") == [
        {"modelName": "m", "modelVersion": "1.0", "minWorkers": 1, "maxWorkers": 1, "batchSize": 1,
         "maxBatchDelay": 100, "workers": workers}
    ]
    assert management.versions("m") == [described("m", "1.0"), described("m", "2.0")]
    assert fake_management.seen[-1] == {"DescribeModelRequest": {"model_name": "m", "model_version": "all"}}


def test_list_follows_page_tokens(management: GrpcManagementClient, fake_management: FakeManagement) -> None:
    fake_management.models = [f"model{i:03d}" for i in range(230)]
    assert [m["modelName"] for m in management.models()] == fake_management.models
    assert [r["ListModelsRequest"] for r in fake_management.seen] == [
        {"limit": 100},
        {"limit": 100, "next_page_token": 100},
        {"limit": 100, "next_page_token": 200},
    ]
    assert management.list_models(limit=2) == {
        "nextPageToken": "2",
        "models": [
            {"modelName": "model000", "modelUrl": "model000.mar"},
            {"modelName": "model001", "modelUrl": "model001.mar"},
        ],
    }


def test_client_refuses_what_torchserve_grpc_cannot_do(
    management: GrpcManagementClient, fake_management: FakeManagement
) -> None:
    with pytest.raises(UnsupportedRequestError, match="min_workers"):
        management.scale("m", 0, 1)
    with pytest.raises(ValueError, match="limit"):
        management.list_models(limit=0)
    with pytest.raises(UnsupportedRequestError, match="initial_workers=0"):
        management.register("m.mar", initial_workers=0)
    assert fake_management.seen == []


def test_each_client_has_one_api() -> None:
    """Like REST's InferenceClient/ManagementClient: no client carries the other API's calls."""
    assert {"ping", "predict", "stream_predict"} <= set(dir(GrpcInferenceClient))
    assert not {"register", "describe", "models"} & set(dir(GrpcInferenceClient))
    assert {"register", "describe", "models"} <= set(dir(GrpcManagementClient))
    assert not {"ping", "predict", "stream_predict"} & set(dir(GrpcManagementClient))


@pytest.mark.usefixtures("fake_management")
def test_context_manager_closes_the_channel(fake_grpc: FakeGrpc) -> None:
    with GrpcInferenceClient(fake_grpc.address, INFERENCE_KEY) as inference:
        assert inference.ping() == "Healthy"
    with pytest.raises(ValueError, match="closed channel"):
        inference.ping()
    with GrpcManagementClient(fake_grpc.address, MANAGEMENT_KEY) as management:
        assert management.describe("m")[0]["modelName"] == "m"
    with pytest.raises(ValueError, match="closed channel"):
        management.describe("m")
