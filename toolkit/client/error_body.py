"""Error answers -> `ServerError`, one type whatever the protocol.

A server answer that is not a success becomes a `toolkit.errors.ServerError` carrying the HTTP status (or the
HTTP status that the gRPC code stands for), the error type the server named, and its message.
"""

from __future__ import annotations

import json

from toolkit.errors import ServerError


def parse_error_body(body: bytes | str) -> dict | None:
    """The `{"code", "type", "message"}` error object in a body, or None when the body is no such object.

    Both our handlers and TorchServe's frontend answer errors with this shape; successful answers never
    carry an integer `code` of 400 or more beside `type` and `message`.
    """
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(obj, dict) or not {"code", "type", "message"} <= obj.keys():
        return None
    code = obj["code"]
    return obj if isinstance(code, int) and code >= 400 else None


def error_from_body(status: int, body: bytes | str) -> ServerError:
    """A ServerError from an HTTP status and whatever body came with it."""
    obj = parse_error_body(body)
    if obj is not None:
        return ServerError(status, str(obj["message"]), str(obj["type"]))
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return ServerError(status, text.strip() or "no message", "")
