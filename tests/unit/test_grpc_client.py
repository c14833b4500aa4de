"""gRPC stubs, wire compatibility with TorchServe 0.12, error mapping, GrpcClient and `manage --grpc`.

Wire compatibility is proven three ways: field numbers/types against the documented facts, raw wire bytes
decoded by hand, and a descriptor comparison with the .proto files TorchServe ships inside its own
model-server.jar. Client behaviour runs against an in-process fake TorchServe gRPC server (real gRPC on a
loopback port) that answers the way TorchServe 0.12 was observed to answer.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import sys
import threading
import zipfile
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2, json_format
from google.protobuf.descriptor import FieldDescriptor

from toolkit.cli import manage
from toolkit.client.grpc import (
    GrpcClient,
    check_prediction,
    error_from_status,
    http_status_for,
    split_details,
)
from toolkit.client.grpc_gen import inference_pb2, inference_pb2_grpc, management_pb2, management_pb2_grpc
from toolkit.errors import ServerError, UnsupportedRequestError

REPO = Path(__file__).resolve().parents[2]
INFERENCE_KEY = "inf-key"
MANAGEMENT_KEY = "mgmt-key"
TOKEN_FAILED = "Token Authorization failed. Token either incorrect, expired, or not provided correctly"
STRING, BYTES, INT32, BOOL, MESSAGE = (
    FieldDescriptor.TYPE_STRING,
    FieldDescriptor.TYPE_BYTES,
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_BOOL,
    FieldDescriptor.TYPE_MESSAGE,
)


def load_gen_grpc():
    """scripts/gen_grpc.py as a module (scripts/ is no package)."""
    spec = importlib.util.spec_from_file_location("gen_grpc", REPO / "scripts" / "gen_grpc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- stubs and wire format ---------------------------------------------------------------------------

# (message, field) -> (number, type, explicit presence), from TorchServe 0.12's API facts.
FIELDS = {
    inference_pb2.PredictionsRequest: {
        "model_name": (1, STRING, False),
        "model_version": (2, STRING, False),
        "input": (3, MESSAGE, False),
        "sequence_id": (4, STRING, True),
    },
    inference_pb2.PredictionResponse: {
        "prediction": (1, BYTES, False),
        "sequence_id": (2, STRING, True),
        "status": (3, MESSAGE, True),
    },
    inference_pb2.TorchServeHealthResponse: {"health": (1, STRING, False)},
    management_pb2.ManagementResponse: {"msg": (1, STRING, False)},
    management_pb2.DescribeModelRequest: {
        "model_name": (1, STRING, False),
        "model_version": (2, STRING, False),
        "customized": (3, BOOL, False),
    },
    management_pb2.ListModelsRequest: {"limit": (1, INT32, False), "next_page_token": (2, INT32, False)},
    management_pb2.RegisterModelRequest: {
        "batch_size": (1, INT32, False),
        "handler": (2, STRING, False),
        "initial_workers": (3, INT32, False),
        "max_batch_delay": (4, INT32, False),
        "model_name": (5, STRING, False),
        "response_timeout": (6, INT32, False),
        "runtime": (7, STRING, False),
        "synchronous": (8, BOOL, False),
        "url": (9, STRING, False),
        "s3_sse_kms": (10, BOOL, False),
        "startup_timeout": (11, INT32, False),
    },
    management_pb2.ScaleWorkerRequest: {
        "model_name": (1, STRING, False),
        "model_version": (2, STRING, False),
        "max_worker": (3, INT32, False),
        "min_worker": (4, INT32, False),
        "number_gpu": (5, INT32, False),
        "synchronous": (6, BOOL, False),
        "timeout": (7, INT32, False),
    },
    management_pb2.SetDefaultRequest: {"model_name": (1, STRING, False), "model_version": (2, STRING, False)},
    management_pb2.UnregisterModelRequest: {"model_name": (1, STRING, False), "model_version": (2, STRING, False)},
}


@pytest.mark.parametrize("message", list(FIELDS), ids=lambda m: m.DESCRIPTOR.name)
def test_field_numbers_and_types_match_torchserve(message) -> None:
    fields = message.DESCRIPTOR.fields_by_name
    got = {name: (f.number, f.type, f.has_presence) for name, f in fields.items()}
    assert got == FIELDS[message]


def test_input_is_a_string_to_bytes_map_and_status_is_google_rpc_status() -> None:
    input_field = inference_pb2.PredictionsRequest.DESCRIPTOR.fields_by_name["input"]
    entry = input_field.message_type
    assert entry.GetOptions().map_entry
    assert (entry.fields_by_name["key"].type, entry.fields_by_name["value"].type) == (STRING, BYTES)
    status_field = inference_pb2.PredictionResponse.DESCRIPTOR.fields_by_name["status"]
    assert status_field.message_type.full_name == "google.rpc.Status"


def test_services_have_torchserve_paths_and_streaming_shapes() -> None:
    inference = inference_pb2.DESCRIPTOR.services_by_name["InferenceAPIsService"]
    management = management_pb2.DESCRIPTOR.services_by_name["ManagementAPIsService"]
    assert inference.full_name == "org.pytorch.serve.grpc.inference.InferenceAPIsService"
    assert management.full_name == "org.pytorch.serve.grpc.management.ManagementAPIsService"
    shapes = {m.name: (m.client_streaming, m.server_streaming) for m in inference.methods}
    assert shapes == {
        "Ping": (False, False),
        "Predictions": (False, False),
        "StreamPredictions": (False, True),
        "StreamPredictions2": (True, True),
    }
    assert inference.methods_by_name["Ping"].input_type.full_name == "google.protobuf.Empty"
    assert {m.name for m in management.methods} == {
        "DescribeModel",
        "ListModels",
        "RegisterModel",
        "ScaleWorker",
        "SetDefault",
        "UnregisterModel",
    }
    assert all(m.output_type.name == "ManagementResponse" for m in management.methods)
    assert all(not (m.client_streaming or m.server_streaming) for m in management.methods)


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        shift += 7
        if not byte & 0x80:
            return value, pos


def decode_fields(data: bytes) -> list[tuple[int, int, bytes | int]]:
    """Raw (field number, wire type, value) triples of a serialized message; varint and length-delimited only."""
    out, pos = [], 0
    while pos < len(data):
        tag, pos = read_varint(data, pos)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            value, pos = read_varint(data, pos)
        else:
            assert wire_type == 2, f"unexpected wire type {wire_type}"
            length, pos = read_varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        out.append((number, wire_type, value))
    return out


def test_predictions_request_wire_bytes() -> None:
    request = inference_pb2.PredictionsRequest(
        model_name="mnist", model_version="2.0", input={"data": b"\x00\xff"}, sequence_id="seq-1"
    )
    fields = decode_fields(request.SerializeToString(deterministic=True))
    assert fields == [
        (1, 2, b"mnist"),
        (2, 2, b"2.0"),
        (3, 2, fields[2][2]),
        (4, 2, b"seq-1"),
    ]
    assert decode_fields(fields[2][2]) == [(1, 2, b"data"), (2, 2, b"\x00\xff")]


def test_register_request_wire_bytes_and_hand_encoded_response() -> None:
    request = management_pb2.RegisterModelRequest(
        batch_size=4, max_batch_delay=50, model_name="m", synchronous=True, url="m.mar", startup_timeout=30
    )
    assert decode_fields(request.SerializeToString()) == [
        (1, 0, 4),
        (4, 0, 50),
        (5, 2, b"m"),
        (8, 0, 1),
        (9, 2, b"m.mar"),
        (11, 0, 30),
    ]
    # Bytes TorchServe would send: field 1 (prediction), field 2 (sequence_id), both length-delimited.
    response = inference_pb2.PredictionResponse.FromString(b"\x0a\x02{}\x12\x01s")
    assert (response.prediction, response.sequence_id) == (b"{}", "s")


def normalised(file_proto: descriptor_pb2.FileDescriptorProto) -> dict:
    """Wire-relevant content of a proto file: package, messages (fields by number), services (methods)."""

    def message(m: descriptor_pb2.DescriptorProto) -> dict:
        return {
            "fields": {f.number: (f.name, f.type, f.label, f.type_name, f.proto3_optional) for f in m.field},
            "nested": {n.name: message(n) for n in m.nested_type},
            "map_entry": m.options.map_entry,
        }

    return {
        "package": file_proto.package,
        "messages": {m.name: message(m) for m in file_proto.message_type},
        "services": {
            s.name: {m.name: (m.input_type, m.output_type, m.client_streaming, m.server_streaming) for m in s.method}
            for s in file_proto.service
        },
    }


def torchserve_descriptors(tmp_path: Path) -> dict[str, descriptor_pb2.FileDescriptorProto]:
    """Compile the inference/management .proto files inside TorchServe's model-server.jar; by file name."""
    from grpc_tools import protoc

    spec = importlib.util.find_spec("ts")
    jar = Path(spec.submodule_search_locations[0]) / "frontend" / "model-server.jar"
    with zipfile.ZipFile(jar) as archive:
        for name in ("inference.proto", "management.proto"):
            (tmp_path / name).write_bytes(archive.read(f"proto/{name}"))
    out = tmp_path / "torchserve.pb"
    includes = [f"-I{d}" for d in load_gen_grpc().include_dirs()]
    args = ["protoc", f"-I{tmp_path}", *includes, f"--descriptor_set_out={out}", "inference.proto", "management.proto"]
    assert protoc.main(args) == 0
    files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    return {f.name: f for f in files}


def test_descriptors_equal_torchserve_shipped_protos(tmp_path: Path) -> None:
    theirs = torchserve_descriptors(tmp_path)
    for name, module in (("inference.proto", inference_pb2), ("management.proto", management_pb2)):
        ours = descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)
        assert normalised(ours) == normalised(theirs[name]), name


def test_generated_package_is_current_and_sync_is_idempotent(tmp_path: Path) -> None:
    gen = load_gen_grpc()
    assert gen.main(["--check"]) == 0
    fresh = gen.generate(tmp_path / "fresh")
    assert sorted(p.name for p in fresh.iterdir()) == [
        "__init__.py",
        "inference_pb2.py",
        "inference_pb2.pyi",
        "inference_pb2_grpc.py",
        "management_pb2.py",
        "management_pb2.pyi",
        "management_pb2_grpc.py",
    ]
    assert "from toolkit.client.grpc_gen import inference_pb2" in (fresh / "inference_pb2_grpc.py").read_text()
    target = tmp_path / "target"
    target.mkdir()
    (target / "stale_pb2.py").write_text("")
    assert "stale_pb2.py" in gen.sync(fresh, target)
    assert gen.sync(fresh, target) == []
    assert sorted(p.name for p in target.iterdir()) == sorted(p.name for p in fresh.iterdir())


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


# ---- client against a fake TorchServe gRPC server ----------------------------------------------------


def _authorised(context: grpc.ServicerContext, key: str) -> None:
    """Refuse the call the way TorchServe 0.12 does when the bearer token is absent or wrong."""
    if dict(context.invocation_metadata()).get("authorization") != f"Bearer {key}":
        context.abort(SC.PERMISSION_DENIED, TOKEN_FAILED)


def _answer(request: inference_pb2.PredictionsRequest, context: grpc.ServicerContext) -> bytes:
    """Fake handler: echo the input parts; model "bad" answers an error body; unknown models fail."""
    if request.model_name == "missing":
        details = f"Model not found: {request.model_name}\norg.pytorch.serve.archive.model.ModelNotFoundException"
        context.abort(SC.INTERNAL, details)
    if request.model_name == "bad":
        return json.dumps({"code": 400, "type": "decode_error", "message": "not an image"}).encode()
    parts = {k: v.decode() for k, v in request.input.items()}
    return json.dumps({"model": request.model_name, "version": request.model_version, "input": parts}).encode()


class FakeInference(inference_pb2_grpc.InferenceAPIsServiceServicer):
    """Inference API answering as TorchServe 0.12 does (token check, health JSON, error details)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def Ping(self, request, context):  # noqa: N802 - gRPC method name
        _authorised(context, INFERENCE_KEY)
        return inference_pb2.TorchServeHealthResponse(health='{\n  "status": "Healthy"\n}')

    def Predictions(self, request, context):  # noqa: N802
        _authorised(context, INFERENCE_KEY)
        if request.model_name == "slow":
            self.release.wait(10)
        return inference_pb2.PredictionResponse(prediction=_answer(request, context))

    def StreamPredictions(self, request, context):  # noqa: N802
        _authorised(context, INFERENCE_KEY)
        yield inference_pb2.PredictionResponse(prediction=b'{"part": 1}')
        yield inference_pb2.PredictionResponse(prediction=_answer(request, context))


def _not_found(context: grpc.ServicerContext, name: str) -> None:
    context.abort(SC.NOT_FOUND, f"Model not found: {name}\norg.pytorch.serve.archive.model.ModelNotFoundException")


class FakeManagement(management_pb2_grpc.ManagementAPIsServiceServicer):
    """Management API answering with TorchServe 0.12's texts (recorded from a real server): a sentence in
    `msg` for register/scale/set-default/unregister, JSON for describe/list. Model "missing" is NOT_FOUND.
    Every authorised request is appended to `seen` as its proto3-JSON dict (fields left at default omitted)."""

    def __init__(self) -> None:
        self.seen: list[dict] = []
        self.models = ["m"]  # names ListModels pages through, in order

    def _accept(self, request, context) -> None:
        _authorised(context, MANAGEMENT_KEY)
        self.seen.append({type(request).__name__: json_format.MessageToDict(request, preserving_proto_field_name=True)})
        if getattr(request, "model_name", "") == "missing":
            _not_found(context, "missing")

    def _reply(self, text: str) -> management_pb2.ManagementResponse:
        return management_pb2.ManagementResponse(msg=text)

    def RegisterModel(self, request, context):  # noqa: N802 - gRPC method name
        self._accept(request, context)
        name = request.model_name or request.url.removesuffix(".mar")
        workers = request.initial_workers or 1
        text = f'Model "{name}" Version: 1.0 registered with {workers} initial workers'
        return self._reply(text if request.synchronous else "Processing worker updates...")

    def ScaleWorker(self, request, context):  # noqa: N802
        self._accept(request, context)
        version = f", version: {request.model_version}" if request.model_version else ""
        text = f"Workers scaled to {request.min_worker} for model: {request.model_name}{version}"
        return self._reply(text if request.synchronous else "Processing worker updates...")

    def SetDefault(self, request, context):  # noqa: N802
        self._accept(request, context)
        model, version = request.model_name, request.model_version
        return self._reply(f'Default version successfully updated for model "{model}" to "{version}"')

    def UnregisterModel(self, request, context):  # noqa: N802
        self._accept(request, context)
        return self._reply(f'Model "{request.model_name}" unregistered')

    def DescribeModel(self, request, context):  # noqa: N802
        self._accept(request, context)
        versions = ["1.0", "2.0"] if request.model_version == "all" else [request.model_version or "1.0"]
        workers = [{"id": "9000", "status": "READY"}]
        descriptions = [{"modelName": request.model_name, "modelVersion": v, "workers": workers} for v in versions]
        return self._reply(json.dumps(descriptions, indent=2))

    def ListModels(self, request, context):  # noqa: N802
        self._accept(request, context)
        start, end = request.next_page_token, request.next_page_token + min(request.limit, 100)
        page: dict = {"models": [{"modelName": n, "modelUrl": f"{n}.mar"} for n in self.models[start:end]]}
        if end < len(self.models):
            page = {"nextPageToken": str(end), **page}
        return self._reply(json.dumps(page, indent=2))


@dataclass
class Fake:
    """The in-process fake TorchServe: one loopback address serving both APIs."""

    address: str
    inference: FakeInference
    management: FakeManagement


@pytest.fixture(scope="module")
def fake_server() -> Iterator[Fake]:
    """A gRPC server on a free loopback port with both fake services."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    fake = Fake("", FakeInference(), FakeManagement())
    inference_pb2_grpc.add_InferenceAPIsServiceServicer_to_server(fake.inference, server)
    management_pb2_grpc.add_ManagementAPIsServiceServicer_to_server(fake.management, server)
    fake.address = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    server.start()
    yield fake
    fake.inference.release.set()
    server.stop(None)


@pytest.fixture
def management(fake_server: Fake) -> Iterator[FakeManagement]:
    """The fake management service, with no request seen yet and the one model "m"."""
    fake_server.management.seen.clear()
    yield fake_server.management
    fake_server.management.models = ["m"]


@pytest.fixture
def client(fake_server: Fake, management: FakeManagement) -> Iterator[GrpcClient]:
    address = fake_server.address
    with GrpcClient(address, address, INFERENCE_KEY, MANAGEMENT_KEY, timeout_s=10) as c:
        yield c


def test_ping_sends_inference_key(client: GrpcClient, fake_server: Fake) -> None:
    assert client.ping() == "Healthy"
    with GrpcClient(fake_server.address, inference_key=MANAGEMENT_KEY) as wrong, pytest.raises(ServerError) as info:
        wrong.ping()
    assert (info.value.status, info.value.message) == (403, TOKEN_FAILED)


def test_predict_sends_model_version_and_named_input(client: GrpcClient) -> None:
    answer = json.loads(client.predict("mnist", b"abc", version="2.0", input_name="body"))
    assert answer == {"model": "mnist", "version": "2.0", "input": {"body": "abc"}}
    assert json.loads(client.predict("mnist", b"x"))["input"] == {"data": "x"}


def test_predict_raises_handler_error_body(client: GrpcClient) -> None:
    with pytest.raises(ServerError) as info:
        client.predict("bad", b"x")
    assert (info.value.status, info.value.kind, info.value.message) == (400, "decode_error", "not an image")


def test_predict_unknown_model_is_404(client: GrpcClient) -> None:
    with pytest.raises(ServerError) as info:
        client.predict("missing", b"x")
    assert (info.value.status, info.value.kind, info.value.message) == (
        404,
        "ModelNotFoundException",
        "Model not found: missing",
    )


def test_missing_token_is_refused(fake_server: Fake) -> None:
    with GrpcClient(fake_server.address) as anonymous, pytest.raises(ServerError) as info:
        anonymous.predict("mnist", b"x")
    assert (info.value.status, info.value.kind) == (403, "PERMISSION_DENIED")


def test_deadline_becomes_504(fake_server: Fake) -> None:
    hasty = GrpcClient(fake_server.address, inference_key=INFERENCE_KEY, timeout_s=0.2)
    with hasty, pytest.raises(ServerError) as info:
        hasty.predict("slow", b"x")
    assert (info.value.status, info.value.kind) == (504, "DEADLINE_EXCEEDED")


def test_unreachable_server_is_503() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with GrpcClient(f"127.0.0.1:{port}", timeout_s=5) as nowhere, pytest.raises(ServerError) as info:
        nowhere.ping()
    assert info.value.status == 503


def test_stream_predict_yields_parts_in_order_and_raises_error_parts(client: GrpcClient) -> None:
    parts = list(client.stream_predict("mnist", b"abc", version="1.0"))
    assert [json.loads(p) for p in parts] == [
        {"part": 1},
        {"model": "mnist", "version": "1.0", "input": {"data": "abc"}},
    ]
    stream = client.stream_predict("bad", b"x")
    assert json.loads(next(stream)) == {"part": 1}
    with pytest.raises(ServerError) as info:
        next(stream)
    assert info.value.kind == "decode_error"
    with pytest.raises(ServerError) as info:
        list(client.stream_predict("missing", b"x"))
    assert info.value.status == 404


def test_register_sends_settings_with_management_key(client: GrpcClient, management: FakeManagement) -> None:
    answer = client.register("m.mar", model_name="m", batch_size=4, max_batch_delay_ms=50, response_timeout_s=30)
    assert answer == {"status": 'Model "m" Version: 1.0 registered with 1 initial workers'}
    assert management.seen == [
        {
            "RegisterModelRequest": {
                "url": "m.mar",
                "model_name": "m",
                "batch_size": 4,
                "max_batch_delay": 50,
                "response_timeout": 30,
                "synchronous": True,
            }
        }
    ]


def test_status_calls_answer_like_rest(client: GrpcClient, management: FakeManagement) -> None:
    assert client.scale("m", 1, 3, version="2.0") == {"status": "Workers scaled to 1 for model: m, version: 2.0"}
    assert client.set_default("m", "2.0") == {"status": 'Default version successfully updated for model "m" to "2.0"'}
    assert client.unregister("m") == {"status": 'Model "m" unregistered'}
    assert management.seen == [
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
        client.unregister("missing")
    assert (info.value.status, info.value.kind) == (404, "ModelNotFoundException")


def test_describe_and_versions_parse_json(client: GrpcClient, management: FakeManagement) -> None:
    workers = [{"id": "9000", "status": "READY"}]
    assert client.describe("m") == [{"modelName": "m", "modelVersion": "1.0", "workers": workers}]
    assert [d["modelVersion"] for d in client.versions("m")] == ["1.0", "2.0"]
    assert management.seen[-1] == {"DescribeModelRequest": {"model_name": "m", "model_version": "all"}}


def test_list_follows_page_tokens(client: GrpcClient, management: FakeManagement) -> None:
    management.models = [f"model{i:03d}" for i in range(230)]
    assert [m["modelName"] for m in client.models()] == management.models
    assert [r["ListModelsRequest"] for r in management.seen] == [
        {"limit": 100},
        {"limit": 100, "next_page_token": 100},
        {"limit": 100, "next_page_token": 200},
    ]
    assert client.list_models(limit=2) == {
        "nextPageToken": "2",
        "models": [
            {"modelName": "model000", "modelUrl": "model000.mar"},
            {"modelName": "model001", "modelUrl": "model001.mar"},
        ],
    }


def test_client_refuses_what_torchserve_grpc_cannot_do(
    client: GrpcClient, fake_server: Fake, management: FakeManagement
) -> None:
    with pytest.raises(UnsupportedRequestError, match="min_workers"):
        client.scale("m", 0, 1)
    with pytest.raises(ValueError, match="limit"):
        client.list_models(limit=0)
    assert management.seen == []
    with GrpcClient(fake_server.address) as inference_only, pytest.raises(ValueError, match="management_address"):
        inference_only.describe("m")
    with GrpcClient(management_address=fake_server.address) as management_only:
        with pytest.raises(ValueError, match="inference_address"):
            management_only.ping()
        with pytest.raises(ValueError, match="inference_address"):
            list(management_only.stream_predict("m", b"x"))


def test_context_manager_closes_channels(fake_server: Fake) -> None:
    address = fake_server.address
    with GrpcClient(address, address, INFERENCE_KEY, MANAGEMENT_KEY) as c:
        assert c.ping() == "Healthy"
        assert c.describe("m")[0]["modelName"] == "m"
    with pytest.raises(ValueError, match="closed channel"):
        c.ping()
    with pytest.raises(ValueError, match="closed channel"):
        c.describe("m")


# ---- manage --grpc -----------------------------------------------------------------------------------


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "key_file.json"
    keys = {"management": {"key": MANAGEMENT_KEY}, "inference": {"key": INFERENCE_KEY}, "API": {"key": "a"}}
    path.write_text(json.dumps(keys))
    return path


@pytest.fixture
def run_manage(fake_server: Fake, key_file: Path, capsys) -> Callable[..., tuple[int, str, str]]:
    """manage.main(argv + `--grpc --grpc-address <fake> --key-file <keys>`) -> (exit code, stdout, stderr)."""

    def run(*argv: str) -> tuple[int, str, str]:
        rc = manage.main([*argv, "--grpc", "--grpc-address", fake_server.address, "--key-file", str(key_file)])
        out, err = capsys.readouterr()
        return rc, out, err

    return run


def printed(answer: object) -> str:
    """What manage prints for an answer."""
    return json.dumps(answer, indent=2) + "\n"


def test_manage_grpc_register_maps_every_option(run_manage: Callable, management: FakeManagement) -> None:
    argv = ["mnist.mar", "--name", "m", "--batch-size", "4", "--max-batch-delay-ms", "50", "--workers", "2"]
    rc, out, err = run_manage("register", *argv, "--response-timeout-s", "30")
    assert (rc, out, err) == (0, printed({"status": 'Model "m" Version: 1.0 registered with 2 initial workers'}), "")
    assert management.seen == [
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
    assert run_manage("register", "tabular.mar", "--no-wait") == (
        0,
        printed({"status": "Processing worker updates..."}),
        "",
    )
    assert management.seen[-1] == {"RegisterModelRequest": {"url": "tabular.mar"}}  # synchronous false: default


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
            [{"modelName": "m", "modelVersion": "2.0", "workers": [{"id": "9000", "status": "READY"}]}],
        ),
        (["list"], {"ListModelsRequest": {"limit": 100}}, [{"modelName": "m", "modelUrl": "m.mar"}]),
    ],
)
def test_manage_grpc_commands_send_and_print(
    run_manage: Callable, management: FakeManagement, argv: list[str], request_sent: dict, answer: object
) -> None:
    assert run_manage(*argv) == (0, printed(answer), "")
    assert management.seen == [request_sent]


@pytest.mark.parametrize("argv", [["describe", "m", "--all"], ["versions", "m"]])
def test_manage_grpc_every_version_is_describe_all(
    run_manage: Callable, management: FakeManagement, argv: list[str]
) -> None:
    rc, out, _ = run_manage(*argv)
    assert rc == 0
    assert [d["modelVersion"] for d in json.loads(out)] == ["1.0", "2.0"]
    assert management.seen == [{"DescribeModelRequest": {"model_name": "m", "model_version": "all"}}]


def test_manage_grpc_options_before_the_command(fake_server: Fake, key_file: Path, capsys) -> None:
    argv = ["--grpc", "--grpc-address", fake_server.address, "--key-file", str(key_file), "--timeout", "5", "list"]
    assert manage.main(argv) == 0
    assert json.loads(capsys.readouterr().out) == [{"modelName": "m", "modelUrl": "m.mar"}]


def test_manage_grpc_server_errors_are_one_line(
    fake_server: Fake, run_manage: Callable, key_file: Path, tmp_path: Path, capsys
) -> None:
    assert run_manage("unregister", "missing") == (
        2,
        "",
        "error: HTTP 404 ModelNotFoundException: Model not found: missing\n",
    )
    wrong = tmp_path / "wrong_keys.json"
    wrong.write_text(json.dumps({"management": {"key": "wrong"}, "inference": {"key": INFERENCE_KEY}}))
    rc = manage.main(["list", "--grpc", "--grpc-address", fake_server.address, "--key-file", str(wrong)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith(f"error: HTTP 403 PERMISSION_DENIED: {TOKEN_FAILED} (key from {wrong};")
    assert err.count("\n") == 1


def test_manage_grpc_refuses_scale_to_zero_before_sending(run_manage: Callable, management: FakeManagement) -> None:
    rc, out, err = run_manage("scale", "m", "--min", "0", "--max", "1")
    assert (rc, out) == (2, "")
    assert err.startswith("error: need 1 <= min_workers <= max_workers over gRPC, got 0, 1")
    assert err.count("\n") == 1
    assert management.seen == []


def test_manage_grpc_unreachable_is_exit_1(key_file: Path, capsys) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"
    assert manage.main(["--grpc", "--grpc-address", address, "--key-file", str(key_file), "list"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: HTTP 503 UNAVAILABLE: ")
    assert err.endswith("(is TorchServe running? start it with `make serve`)\n")
    assert err.count("\n") == 1


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
