"""The tensors of an Open Inference Protocol request (handlers.oip): datatypes, one input tensor read from its JSON
`data` (flat or nested numbers, or strings for `BYTES`) or from the binary extension's bytes, and the helpers a
handler's `decode_oip` uses. Every mistake is an `OipError` naming the tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from handlers.errors import ClientError

if TYPE_CHECKING:  # annotations only: handlers.oip imports this module
    from handlers.oip import OipRequest

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
INPUT_KEYS = {"name", "shape", "datatype", "parameters", "data"}


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


def parameters_of(value: object, where: str) -> dict:
    """A `parameters` object (empty when absent); OipError when it is not an object."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise OipError(f"'parameters' of {where} must be an object, got {type(value).__name__}")
    return value


def input_tensor(item: object, index: int, binary: bytes | None, offset: int) -> tuple[Tensor, int]:
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
    size = parameters_of(item.get("parameters"), f"input '{name}'").get("binary_data_size")
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
