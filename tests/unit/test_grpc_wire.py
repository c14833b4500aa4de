"""The generated gRPC stubs against TorchServe 0.12's wire format, and `scripts/gen_grpc.py`.

Wire compatibility is proven three ways: field numbers/types against the documented facts, raw wire bytes
decoded by hand, and a descriptor comparison with the .proto files TorchServe ships inside its own
model-server.jar. The generated package must be current and regenerating it idempotent.
"""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FieldDescriptor

from toolkit.client.grpc_gen import inference_pb2, management_pb2

REPO = Path(__file__).resolve().parents[2]
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
