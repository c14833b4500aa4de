"""Client-facing errors, each carrying its HTTP status and a stable type name.

A handler raises these while decoding or validating ONE request; `handlers.base` turns them into that
request's status and JSON body `{"code", "type", "message"}` in one place. Anything else raised during
inference is a server fault of the whole batch.
"""

from __future__ import annotations


class ClientError(Exception):
    """A request the client must fix. Subclasses set `status` (HTTP) and `error_type`."""

    status = 400
    error_type = "bad_request"
    phrase = "Bad Request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_body(self) -> dict:
        """The JSON error body sent to the client."""
        return {"code": self.status, "type": self.error_type, "message": self.message}


class DecodeError(ClientError):
    """The body cannot be read: malformed JSON, bad UTF-8, an undecodable or truncated image."""

    error_type = "decode_error"


class ValidationError(ClientError):
    """The body was read but its content is wrong: shape, dtype, range, NaN/Inf, missing key."""

    error_type = "validation_error"


class PayloadTooLarge(ClientError):
    """Too many inputs in one request, or an image whose declared size exceeds the configured limit."""

    status = 413
    error_type = "payload_too_large"
    phrase = "Payload Too Large"


class ModelConfigError(ValueError):
    """The model YAML is invalid. Raised at archive time and at worker start, never per request."""
