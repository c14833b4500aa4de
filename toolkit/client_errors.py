"""Errors raised by our REST and gRPC clients, one type whatever the protocol.

A server answer that is not a success becomes a `ServerError` carrying the HTTP status (or the HTTP status
that the gRPC code stands for), the error type the server named, and its message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

# HTTP status -> gRPC status code name, as our error bodies and TorchServe's gRPC frontend map them.
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


def grpc_code_name(http_status: int) -> str:
    """gRPC status code name for an HTTP status: the table above, INTERNAL for any other 5xx."""
    if http_status in HTTP_TO_GRPC:
        return HTTP_TO_GRPC[http_status]
    return "INTERNAL" if http_status >= 500 else "UNKNOWN"


@dataclass
class ServerError(Exception):
    """The server refused or failed a call. `status` is HTTP; `kind` is the server's error type."""

    status: int
    message: str
    kind: str = ""

    def __str__(self) -> str:
        kind = f" {self.kind}" if self.kind else ""
        return f"HTTP {self.status}{kind}: {self.message}"


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
