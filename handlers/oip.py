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

The tensors themselves (datatypes, JSON and binary data, BYTES) are read by `handlers.oip_tensors`.
`OpenInference` is the protocol (`handlers.protocols`) a handler lists to speak it: it claims each request
TorchServe routed from an OIP path, hands the parsed `OipRequest` to the handler's `decode_oip`, and sends the
arrays of its `encode_oip` (the classifiers: `probabilities` FP32 [n, classes], `predicted_label` INT64 [n]) as
the answer's output tensors; other routes keep TorchServe's bodies (`decode`/`encode`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from handlers.decoding import request_body
from handlers.errors import ClientError
from handlers.oip_tensors import DATATYPES, OipError, Tensor, input_tensor, parameters_of
from handlers.protocols import JSON_CONTENT_TYPE, Protocol, Reply, RequestInfo, header_value, json_bytes

if TYPE_CHECKING:  # annotations only
    from handlers.base import Decoded, ServingHandler
    from handlers.outputs import ModelOutputs

BINARY_HEADER = "inference-header-content-length"
BINARY_CONTENT_TYPE = "application/octet-stream"
REQUEST_KEYS = {"id", "parameters", "inputs", "outputs", "model_name", "model_version"}
OUTPUT_KEYS = {"name", "parameters"}


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
    parameters = parameters_of(envelope.get("parameters"), "request")
    inputs = envelope.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise OipError("'inputs' must be a non-empty list of tensors {name, shape, datatype, data}")
    offset = 0
    tensors = []
    for index, item in enumerate(inputs):
        tensor, offset = input_tensor(item, index, binary, offset)
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
        flag = parameters_of(item.get("parameters"), f"output '{item['name']}'").get("binary_data", binary_default)
        if item["name"] not in names:
            names.append(item["name"])
        if flag:
            binary.add(item["name"])
    return names, binary


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
