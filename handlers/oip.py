"""The Open Inference Protocol (OIP, KServe "v2", the REST protocol of Triton) inside our handlers, per request.

TorchServe 0.12 hands `POST /v2/models/<model>/infer` on the inference port to the model's handler like any
prediction: one row `{"body": ...}` per request, dynamically batched with the other requests of the model, the
raw body (already-parsed JSON for `Content-Type: application/json`, bytes otherwise) and every HTTP header of
the request. It adds no marker of the route except its own headers: `explain: False` on every REST prediction
route, and `url_path` only on `/predictions/...` and `/explanations/...` (not on `/v1/models/<m>:predict`,
`/v2/models/<m>/infer` or gRPC). `is_oip_route` reads exactly that. TorchServe's own `kservev2` envelope is not
used: it answers only the first request of a batch (pytorch/serve #2158), whereas here every request of a batch
is decoded, validated and answered on its own.

Request  `{"id"?, "parameters"?, "inputs": [{"name", "shape", "datatype", "parameters"?, "data"}],
           "outputs"?: [{"name", "parameters"?}]}`; `data` flat (row-major) or nested. The binary tensor
         extension is supported both ways: with the header `Inference-Header-Content-Length: <n>` the first n
         bytes are the JSON and the tensors whose `parameters.binary_data_size` is set follow it, in input order,
         little-endian; an output is sent binary when it (`parameters.binary_data`) or the request
         (`parameters.binary_data_output`) asks, with the same response header. `BYTES` tensors (text) hold
         strings in JSON `data`, and in binary each element as a 4-byte little-endian length and its bytes.
Response `{"model_name", "model_version", "id", "outputs": [{"name", "shape", "datatype", "data"}]}`; `id` is the
         request's own, else TorchServe's request id.
Errors   `{"error": "<message>"}` with the request's 4xx (`OipError`); the rest of its batch is answered.

`OpenInference` is the protocol (`handlers.protocols`) a handler lists to speak it: it claims each request
TorchServe routed from an OIP path, hands the parsed `OipRequest` to the handler's `decode_oip`, and sends the
arrays of its `encode_oip` (the classifiers: `probabilities` FP32 [n, classes], `predicted_label` INT64 [n]) as
the answer's output tensors; other routes keep TorchServe's bodies (`decode`/`encode`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from handlers.decoding import request_body
from handlers.errors import ClientError
from handlers.protocols import JSON_CONTENT_TYPE, Protocol, Reply, RequestInfo, header_value, json_bytes

if TYPE_CHECKING:  # annotations only
    from handlers.base import Decoded, ServingHandler
    from handlers.outputs import ModelOutputs

BINARY_HEADER = "inference-header-content-length"
BINARY_CONTENT_TYPE = "application/octet-stream"
BYTES = "BYTES"  # strings: JSON strings, or in binary each element's 4-byte little-endian length and its bytes
# OIP datatype -> numpy dtype (little-endian, as the binary extension sends them). BYTES is not a numeric tensor:
# its Tensor.array is an object array of each element's bytes.
DATATYPES: dict[str, np.dtype] = {
    name: np.dtype(code).newbyteorder("<")
    for name, code in {
        "BOOL": "?", "UINT8": "u1", "UINT16": "u2", "UINT32": "u4", "UINT64": "u8", "INT8": "i1", "INT16": "i2",
        "INT32": "i4", "INT64": "i8", "FP16": "f2", "FP32": "f4", "FP64": "f8",
    }.items()
}
REQUEST_KEYS = {"id", "parameters", "inputs", "outputs", "model_name", "model_version"}
INPUT_KEYS = {"name", "shape", "datatype", "parameters", "data"}
OUTPUT_KEYS = {"name", "parameters"}


class OipError(ClientError):
    """A client mistake in an OIP request: answered `{"error": message}` with its status (400, or 413)."""

    def __init__(self, message: str, status: int = 400, phrase: str = "Bad Request") -> None:
        super().__init__(message)
        self.status = status
        self.phrase = phrase

    @classmethod
    def of(cls, error: ClientError) -> OipError:
        """The same mistake (message, status) in OIP's error form."""
        return error if isinstance(error, OipError) else cls(error.message, error.status, error.phrase)

    def to_body(self) -> dict:
        return {"error": self.message}


@dataclass(frozen=True)
class Tensor:
    """One decoded input tensor: its name, declared datatype and the data as an array of the declared shape
    (for BYTES an object array of each element's bytes)."""

    name: str
    datatype: str
    array: np.ndarray


@dataclass(frozen=True)
class OipRequest:
    """One parsed OIP request. `outputs`: requested output names (None: every output); `binary`: output names
    to send with the binary extension; `binary_default`: the request's `binary_data_output` (every output binary
    unless it says otherwise)."""

    id: str | None
    inputs: list[Tensor]
    outputs: list[str] | None = None
    binary: set[str] = field(default_factory=set)
    binary_default: bool = False

    def sends_binary(self, name: str) -> bool:
        """Whether output `name` goes out with the binary extension."""
        return name in self.binary if self.outputs is not None else self.binary_default


def is_oip_route(headers: Mapping | None) -> bool:
    """Whether TorchServe routed this request from a KServe path (`/v2/models/<m>/infer`, also `/v1/...`):
    it carries TorchServe's `explain` header but not the `url_path` header that `/predictions` adds."""
    return header_value(headers, "explain") is not None and header_value(headers, "url_path") is None


# ---- request ------------------------------------------------------------------------------------------------


def parse_request(body: object, headers: Mapping | None) -> OipRequest:
    """One OIP request body (as TorchServe hands it over) and its headers -> OipRequest, or OipError."""
    envelope, binary = _split_binary(body, header_value(headers, BINARY_HEADER))
    if not isinstance(envelope, dict):
        raise OipError(f"an inference request must be a JSON object with 'inputs'; got {type(envelope).__name__}")
    unknown = sorted(set(envelope) - REQUEST_KEYS)
    if unknown:
        raise OipError(f"unknown request keys {unknown}; allowed: {sorted(REQUEST_KEYS)}")
    request_id = envelope.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise OipError(f"'id' must be a string, got {type(request_id).__name__}")
    parameters = _parameters(envelope.get("parameters"), "request")
    inputs = envelope.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise OipError("'inputs' must be a non-empty list of tensors {name, shape, datatype, data}")
    offset = 0
    tensors = []
    for index, item in enumerate(inputs):
        tensor, offset = _input_tensor(item, index, binary, offset)
        tensors.append(tensor)
    if binary is not None and offset != len(binary):
        raise OipError(f"{len(binary) - offset} bytes of binary data after the last input's binary_data_size")
    binary_default = bool(parameters.get("binary_data_output", False))
    outputs, binary_outputs = _requested_outputs(envelope.get("outputs"), binary_default)
    return OipRequest(request_id, tensors, outputs, binary_outputs, binary_default)


def _split_binary(body: object, json_length: str | None) -> tuple[object, bytes | None]:
    """The JSON part of the body (parsed) and the binary part (None without the binary extension header)."""
    if body is None:
        raise OipError("empty request body")
    if json_length is not None:
        if not isinstance(body, (bytes, bytearray)):  # TorchServe parsed it: the whole body was JSON
            body = json.dumps(body).encode() if not isinstance(body, str) else body.encode()
        try:
            length = int(json_length)
        except ValueError:
            raise OipError(f"Inference-Header-Content-Length must be an integer, got {json_length!r}") from None
        if not 0 < length <= len(body):
            raise OipError(f"Inference-Header-Content-Length {length} outside the body of {len(body)} bytes")
        return _json(bytes(body[:length])), bytes(body[length:])
    if isinstance(body, (bytes, bytearray, str)):
        return _json(body), None
    return body, None


def _json(data: bytes | bytearray | str) -> object:
    try:
        return json.loads(data)
    except UnicodeDecodeError:
        raise OipError("the request is not UTF-8 JSON (binary tensor data needs the "
                       "Inference-Header-Content-Length header)") from None
    except json.JSONDecodeError as exc:
        raise OipError(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def _parameters(value: object, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise OipError(f"'parameters' of {where} must be an object, got {type(value).__name__}")
    return value


def _input_tensor(item: object, index: int, binary: bytes | None, offset: int) -> tuple[Tensor, int]:
    """inputs[index] -> Tensor (data from JSON or from `binary` at `offset`) and the next binary offset."""
    if not isinstance(item, dict):
        raise OipError(f"inputs[{index}] must be an object {{name, shape, datatype, data}}")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise OipError(f"inputs[{index}] needs a 'name' (a non-empty string)")
    unknown = sorted(set(item) - INPUT_KEYS)
    if unknown:
        raise OipError(f"input '{name}': unknown keys {unknown}; allowed: {sorted(INPUT_KEYS)}")
    shape = item.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                               for d in shape):
        raise OipError(f"input '{name}': 'shape' must be a list of non-negative integers, got {shape!r}")
    datatype = item.get("datatype")
    if datatype not in DATATYPES and datatype != BYTES:
        raise OipError(f"input '{name}': datatype {datatype!r} is not an OIP datatype "
                       f"({', '.join([*DATATYPES, BYTES])})")
    size = _parameters(item.get("parameters"), f"input '{name}'").get("binary_data_size")
    if size is not None:
        read = _binary_strings if datatype == BYTES else _binary_data
        return Tensor(name, datatype, read(binary, offset, size, name, datatype, shape)), offset + size
    if "data" not in item:
        raise OipError(f"input '{name}' has no 'data' (nor parameters.binary_data_size)")
    read = _json_strings if datatype == BYTES else _json_data
    return Tensor(name, datatype, read(item["data"], name, datatype, shape)), offset


def _binary_part(binary: bytes | None, offset: int, size: object, name: str) -> bytes:
    """The `size` bytes of the binary part from `offset` that input `name` declares."""
    if binary is None:
        raise OipError(f"input '{name}' has binary_data_size but the request has no "
                       "Inference-Header-Content-Length header")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise OipError(f"input '{name}': binary_data_size must be a non-negative integer, got {size!r}")
    if offset + size > len(binary):
        raise OipError(f"input '{name}': binary data ends after {len(binary) - offset} of {size} bytes")
    return binary[offset:offset + size]


def _binary_data(binary: bytes | None, offset: int, size: object, name: str, datatype: str,
                 shape: list[int]) -> np.ndarray:
    """`size` bytes of the binary part from `offset` as an array of `shape` (little-endian `datatype`)."""
    dtype, count = DATATYPES[datatype], math.prod(shape)
    if isinstance(size, int) and not isinstance(size, bool) and size != count * dtype.itemsize:
        raise OipError(f"input '{name}': binary_data_size {size!r} does not match shape {shape} of {datatype} "
                       f"({count * dtype.itemsize} bytes)")
    return np.frombuffer(_binary_part(binary, offset, size, name), dtype=dtype, count=count).reshape(shape)


def _binary_strings(binary: bytes | None, offset: int, size: object, name: str, datatype: str,
                    shape: list[int]) -> np.ndarray:
    """A BYTES tensor of the binary extension: each element a 4-byte little-endian length, then that many
    bytes, in row-major order -> an object array of `shape` holding each element's bytes."""
    data, count = _binary_part(binary, offset, size, name), math.prod(shape)
    elements, position = [], 0
    for index in range(count):
        if position + 4 > len(data):
            raise OipError(f"input '{name}': binary BYTES data ends before element {index} of {count}")
        length = int.from_bytes(data[position:position + 4], "little")
        position += 4
        if position + length > len(data):
            raise OipError(f"input '{name}': element {index} declares {length} bytes; "
                           f"{len(data) - position} are left")
        elements.append(data[position:position + length])
        position += length
    if position != len(data):
        raise OipError(f"input '{name}': {len(data) - position} bytes after the {count} elements of shape {shape}")
    return _object_array(elements, shape)


def _json_strings(data: object, name: str, datatype: str, shape: list[int]) -> np.ndarray:
    """JSON `data` of a BYTES tensor, flat or nested strings, as an object array of `shape` holding each
    string's UTF-8 bytes (the binary form's elements)."""
    if not isinstance(data, list):
        raise OipError(f"input '{name}': 'data' must be a list, got {type(data).__name__}")
    flat: list[bytes] = []
    _flatten_strings(data, name, flat)
    if len(flat) != math.prod(shape):
        raise OipError(f"input '{name}': shape {shape} needs {math.prod(shape)} values; 'data' has {len(flat)}")
    if any(isinstance(item, list) for item in data):
        try:
            nested = list(np.asarray(data, dtype=np.str_).shape)
        except ValueError:
            raise OipError(f"input '{name}': 'data' is ragged (nested lists of unequal lengths)") from None
        if nested != shape:
            raise OipError(f"input '{name}': nested 'data' has shape {nested}, not the declared {shape}")
    return _object_array(flat, shape)


def _flatten_strings(value: object, name: str, out: list[bytes]) -> None:
    if isinstance(value, list):
        for item in value:
            _flatten_strings(item, name, out)
    elif isinstance(value, str):
        try:
            out.append(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise OipError(f"input '{name}': element {len(out)} is not valid Unicode (a lone surrogate)") from None
    else:
        raise OipError(f"input '{name}': BYTES 'data' must hold only strings, got {type(value).__name__}")


def _object_array(elements: list[bytes], shape: list[int]) -> np.ndarray:
    array = np.empty(len(elements), dtype=object)
    array[:] = elements
    return array.reshape(shape)


def _json_data(data: object, name: str, datatype: str, shape: list[int]) -> np.ndarray:
    """JSON `data`, flat or nested, as an array of `shape` with the datatype's dtype."""
    if not isinstance(data, list):
        raise OipError(f"input '{name}': 'data' must be a list, got {type(data).__name__}")
    try:
        array = np.asarray(data)
    except ValueError:
        raise OipError(f"input '{name}': 'data' is ragged (nested lists of unequal lengths)") from None
    if array.dtype.kind not in "biuf":
        raise OipError(f"input '{name}': 'data' must hold only numbers for {datatype}")
    if array.size != math.prod(shape):
        raise OipError(f"input '{name}': shape {shape} needs {math.prod(shape)} values; 'data' has {array.size}")
    if array.ndim > 1 and list(array.shape) != shape:
        raise OipError(f"input '{name}': nested 'data' has shape {list(array.shape)}, not the declared {shape}")
    dtype = DATATYPES[datatype]
    if dtype.kind in "iub" and array.dtype.kind == "f":
        raise OipError(f"input '{name}': {datatype} data must be integers")
    if dtype.kind in "iu" and array.size:
        info = np.iinfo(dtype)
        if array.min() < info.min or array.max() > info.max:
            raise OipError(f"input '{name}': values outside the range of {datatype} [{info.min}, {info.max}]")
    return array.astype(dtype).reshape(shape)


def _requested_outputs(value: object, binary_default: bool) -> tuple[list[str] | None, set[str]]:
    """`outputs` of the request -> (names asked for, or None for all; names to send binary). A name asked
    for twice counts once. `binary_default` is the request's `binary_data_output`."""
    if value is None:
        return None, set()
    if not isinstance(value, list):
        raise OipError(f"'outputs' must be a list of {{name, parameters?}}, got {type(value).__name__}")
    names, binary = [], set()
    for index, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise OipError(f"outputs[{index}] must be an object with a 'name'")
        unknown = sorted(set(item) - OUTPUT_KEYS)
        if unknown:
            raise OipError(f"output '{item['name']}': unknown keys {unknown}; allowed: {sorted(OUTPUT_KEYS)}")
        flag = _parameters(item.get("parameters"), f"output '{item['name']}'").get("binary_data", binary_default)
        if item["name"] not in names:
            names.append(item["name"])
        if flag:
            binary.add(item["name"])
    return names, binary


def single_input(request: OipRequest, allowed: tuple[str, ...]) -> Tensor:
    """The request's one input tensor (any name), refused unless its datatype is one of `allowed`."""
    if len(request.inputs) != 1:
        names = [t.name for t in request.inputs]
        raise OipError(f"this model takes exactly 1 input tensor; got {len(names)}: {names}")
    tensor = request.inputs[0]
    if tensor.datatype not in allowed:
        raise OipError(f"input '{tensor.name}': datatype {tensor.datatype} not accepted; send {' or '.join(allowed)}")
    return tensor


def finite_float32(tensor: Tensor) -> np.ndarray:
    """The tensor as float32, refusing NaN and Inf."""
    array = tensor.array.astype(np.float32)
    if not np.isfinite(array).all():
        raise OipError(f"input '{tensor.name}' contains NaN or Inf")
    return array


# ---- response -----------------------------------------------------------------------------------------------

# numpy dtype kind+size -> OIP datatype, for the arrays a handler's `encode_oip` returns.
OUTPUT_DATATYPES: dict[np.dtype, str] = {dtype.newbyteorder("="): name for name, dtype in DATATYPES.items()}


def output_datatype(name: str, array: np.ndarray) -> str:
    """The OIP datatype of an output array (its dtype); TypeError for a dtype OIP has no name for."""
    datatype = OUTPUT_DATATYPES.get(array.dtype.newbyteorder("="))
    if datatype is None:
        raise TypeError(f"output {name!r} has dtype {array.dtype}, which has no OIP datatype")
    return datatype


def class_scores(scores: torch.Tensor) -> dict[str, np.ndarray]:
    """(n, classes) model scores -> `probabilities` FP32 [n, classes] (softmax) and `predicted_label` INT64 [n]:
    the outputs of the classifiers."""
    probabilities = torch.softmax(scores.float(), dim=1)
    return {
        "probabilities": probabilities.numpy().astype("<f4"),
        "predicted_label": probabilities.argmax(dim=1).numpy().astype("<i8"),
    }


def check_outputs(request: OipRequest, names: Sequence[str]) -> None:
    """Refuse a request that asks for an output the handler does not produce (`names`)."""
    unknown = [name for name in request.outputs or () if name not in names]
    if unknown:
        raise OipError(f"unknown output {unknown[0]!r}; this model has outputs {list(names)}")


def encode_response(request: OipRequest, tensors: Mapping[str, np.ndarray], model_name: str, model_version: str,
                    request_id: str) -> tuple[bytes, int | None]:
    """The response body and, with binary outputs, the length of its JSON part (else None). `tensors` holds
    every output the handler produced; the request's `outputs` (when given) picks and orders them."""
    outputs, raw = [], []
    for name in request.outputs or list(tensors):
        array = tensors[name]
        entry: dict = {"name": name, "shape": list(array.shape), "datatype": output_datatype(name, array)}
        if request.sends_binary(name):
            data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
            entry["parameters"] = {"binary_data_size": len(data)}
            raw.append(data)
        else:
            entry["data"] = array.reshape(-1).tolist()
        outputs.append(entry)
    answer = {"model_name": model_name, "model_version": model_version, "id": request.id or request_id,
              "outputs": outputs}
    text = json.dumps(answer, separators=(",", ":")).encode()
    return (text + b"".join(raw), len(text)) if raw else (text, None)


def extra_tensors(outputs: ModelOutputs, names: Sequence[str]) -> dict[str, np.ndarray]:
    """The model outputs the YAML adds to each answer (`handler.extra_outputs`), as OIP output tensors (this
    request's rows; outputs that are not tensors, such as per-input dicts, have no OIP form and are left out)."""
    return {name: outputs[name].numpy() for name in names if isinstance(outputs[name], torch.Tensor)}


class OpenInference(Protocol[OipRequest]):
    """The Open Inference Protocol as a composed part: claims the requests TorchServe routed from
    `/v2/models/<model>/infer`, parses them (`parse_request`), and calls the handler's
    `decode_oip(request: OipRequest) -> Decoded` and `encode_oip(outputs: ModelOutputs, item) -> {name: array}`;
    the handler's `oip_outputs` names the outputs it produces, and `handler.extra_outputs` adds the model outputs
    it names (a request asking for another is refused)."""

    name = "Open Inference Protocol"
    requires = ("decode_oip", "encode_oip")

    def claims(self, request: RequestInfo) -> bool:
        return is_oip_route(request.headers)

    def parse(self, request: RequestInfo) -> OipRequest:
        try:
            return parse_request(request_body(request.row), request.headers)
        except ClientError as error:
            raise OipError.of(error) from None

    def decode(self, handler: ServingHandler, envelope: OipRequest) -> Decoded:
        try:
            check_outputs(envelope, (*handler.oip_outputs, *handler.settings.extra_outputs))
            return handler.decode_oip(envelope)
        except ClientError as error:
            raise OipError.of(error) from None

    def encode(self, handler: ServingHandler, request: RequestInfo, envelope: OipRequest, item: Decoded,
               outputs: ModelOutputs) -> Reply:
        tensors = {**handler.encode_oip(outputs, item), **extra_tensors(outputs, handler.settings.extra_outputs)}
        body, json_length = encode_response(envelope, tensors, handler.model_name, handler.model_version,
                                            request.request_id)
        if json_length is None:
            return Reply(body, JSON_CONTENT_TYPE)
        return Reply(body, BINARY_CONTENT_TYPE, {"Inference-Header-Content-Length": str(json_length)})

    def refuse(self, request: RequestInfo, error: ClientError) -> Reply:
        error = OipError.of(error)
        return Reply(json_bytes(error.to_body()), status=error.status, phrase=error.phrase)


OPEN_INFERENCE = OpenInference()
