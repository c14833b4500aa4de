"""Turning one raw request body into Python values, shared by every handler.

TorchServe hands a handler either bytes (binary bodies, or JSON it failed to parse), a str (text bodies)
or already-parsed JSON (dict/list, for `Content-Type: application/json`). These helpers normalise that,
and raise DecodeError / ValidationError with a message that names the problem.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math

import numpy as np

from handlers.errors import DecodeError, ValidationError

IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")
NPY_MAGIC = b"\x93NUMPY"


def is_image_bytes(data: bytes) -> bool:
    """Whether bytes start like a PNG, JPEG, GIF or BMP file."""
    return data.startswith(IMAGE_MAGIC)


def parse_json_text(data: bytes | str) -> object:
    """Strict JSON: UTF-8 text to a value. Raises DecodeError for bad UTF-8 or malformed JSON."""
    if isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(f"body is not UTF-8 text (invalid byte at offset {exc.start})") from None
    if not data.strip():
        raise DecodeError("empty request body")
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise DecodeError(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def load_npy(data: bytes, max_bytes: int) -> np.ndarray:
    """A NumPy `.npy` body (Content-Type application/x-npy) as an array. Pickled objects are refused."""
    if len(data) > max_bytes:
        raise DecodeError(f".npy body of {len(data)} bytes exceeds {max_bytes} bytes")
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DecodeError(f"not a valid .npy array: {exc}") from None


def decode_base64(text: str) -> bytes:
    """Standard base64 (an optional `data:...;base64,` prefix allowed) to bytes."""
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise DecodeError("string is neither JSON nor valid base64 image data") from None


def _first_bad_number(values: object, path: str) -> str | None:
    """Path and value of the first element of a nested list that is not a finite number, or None."""
    if isinstance(values, (list, tuple)):
        for i, value in enumerate(values):
            found = _first_bad_number(value, f"{path}[{i}]")
            if found:
                return found
        return None
    if isinstance(values, bool) or not isinstance(values, (int, float)):
        return f"{path} = {values!r} is not a number"
    return None if math.isfinite(values) else f"{path} = {values!r} is not finite (NaN/Inf refused)"


def _ragged(values: object, path: str) -> str | None:
    """Path of the first list whose items have unequal lengths, or None."""
    if not isinstance(values, list) or not values or not all(isinstance(v, list) for v in values):
        return None
    lengths = {len(v) for v in values}
    if len(lengths) > 1:
        return f"{path} has rows of unequal lengths {sorted(lengths)} (ragged)"
    return next((r for i, v in enumerate(values) if (r := _ragged(v, f"{path}[{i}]"))), None)


def numeric_array(values: object, name: str) -> np.ndarray:
    """A nested list of finite numbers as a float32 array, or ValidationError naming the bad element."""
    if not isinstance(values, list):
        raise ValidationError(f"'{name}' must be a list of numbers, got {type(values).__name__}")
    try:
        array = np.array(values)  # fast path; strings give a str dtype, ragged lists raise
    except ValueError:
        array = None
    if array is None or array.dtype.kind not in "iuf":
        problem = _ragged(values, name) or _first_bad_number(values, name)
        raise ValidationError(problem or f"'{name}' is not a rectangular array of numbers")
    return check_finite(array, name)


def check_finite(array: np.ndarray, name: str) -> np.ndarray:
    """The array as float32 if numeric and finite, else ValidationError."""
    if array.dtype.kind not in "biuf":
        raise ValidationError(f"'{name}' has dtype {array.dtype}; numbers expected")
    array = array.astype(np.float32, copy=False)
    if not np.isfinite(array).all():
        raise ValidationError(f"'{name}' contains NaN or Inf")
    return array
