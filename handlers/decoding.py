"""Turning one raw request body into Python values, shared by every handler.

TorchServe hands a handler one row per request: `{"body": value}` for a plain REST body, one entry per field
for a form or multipart body (and per query parameter), `{input_name: value}` for gRPC. The value is bytes
(binary bodies, or JSON it failed to parse), a str (text bodies) or already-parsed JSON (dict/list, for
`Content-Type: application/json`). These helpers find the body in the row, normalise it, and raise
DecodeError / ValidationError with a message that names the problem.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math

import numpy as np

from handlers.errors import DecodeError, PayloadTooLarge, ValidationError

IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")
NPY_MAGIC = b"\x93NUMPY"
BODY_KEYS = ("data", "body")  # a form/multipart field named "data", else TorchServe's name for a plain body
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
# TorchServe's frontend parses a urlencoded body as `name=value&...` form fields and hands the worker only those
# fields, URL-decoded; `curl -d @file` sends that content type by default (and drops the file's CR/LF bytes).
FORM_BODY = (
    "the body was sent as a form (Content-Type: application/x-www-form-urlencoded, the default of curl -d), so "
    "TorchServe split it into form fields and the body itself never reached the model; send the bytes as they "
    "are: curl --data-binary @FILE (or -T FILE) with -H 'Content-Type: image/png' (or application/json, "
    "application/x-npy)"
)


def request_body(row: dict, content_type: str | None = None) -> object:
    """The payload of one TorchServe request row, given the request's Content-Type header.

    A form or multipart field named "data" wins, then a plain REST body ("body"); a row of one entry (a gRPC
    input, a single multipart file) is that entry. A urlencoded form without such a field is refused with
    DecodeError(FORM_BODY): its fields are pieces of a body that was never meant as a form. None when the
    request carried nothing.
    """
    for key in BODY_KEYS:
        if key in row:
            return row[key]
    if content_type and content_type.split(";")[0].strip().lower() == FORM_CONTENT_TYPE:
        raise DecodeError(FORM_BODY)
    return next(iter(row.values())) if len(row) == 1 else None


def read_body(body: object, *, images: bool, max_npy_bytes: int) -> object:
    """One request body -> a Python value: an ndarray (.npy bytes), parsed JSON, or the body as it came.

    None -> DecodeError("empty request body"). Bytes: an encoded image stays bytes (only with `images`), a `.npy`
    array (at most `max_npy_bytes`) is loaded, anything else is parsed as UTF-8 JSON. A str is parsed as JSON,
    except that with `images` a str that does not start like JSON is kept (base64 image text). Already-parsed
    JSON (dict, list, number) is returned unchanged.
    """
    if body is None:
        raise DecodeError("empty request body")
    if isinstance(body, (bytes, bytearray)):
        return _read_bytes(bytes(body), images, max_npy_bytes)
    if isinstance(body, str):
        return body if images and not _starts_like_json(body) else parse_json_text(body)
    return body


def _starts_like_json(text: str) -> bool:
    """Whether text starts like a JSON object, array or string (blank text counts: it is an empty body)."""
    return text.lstrip()[:1] in ("{", "[", '"', "")


def _read_bytes(data: bytes, images: bool, max_npy_bytes: int) -> object:
    if images and is_image_bytes(data):
        return data
    if data.startswith(NPY_MAGIC):
        return load_npy(data, max_npy_bytes)
    if not images:
        return parse_json_text(data)
    try:
        return parse_json_text(data)
    except DecodeError as exc:
        raise DecodeError(f"body is neither an image (PNG, JPEG, GIF, BMP), a .npy array nor JSON: {exc}") from None


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
    """A NumPy `.npy` body (Content-Type application/x-npy) as an array. Pickled objects are refused, and so
    (before parsing) is a body over `max_bytes`, with PayloadTooLarge."""
    if len(data) > max_bytes:
        raise PayloadTooLarge(f".npy body of {len(data)} bytes exceeds {max_bytes} bytes")
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
