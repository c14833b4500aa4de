"""Error answers -> `ServerError`, one type whatever the protocol.

A server answer that is not a success becomes a `toolkit.errors.ServerError` carrying the HTTP status (or the
HTTP status that the gRPC code stands for), the error type the server named, and its message. A refusal for
prediction refused for lack of room (`is_busy`: a full model queue) becomes the subclass `ServerBusyError`
(`busy_or_same`), which the inference clients retry.
"""

from __future__ import annotations

import json

from toolkit.errors import ServerBusyError, ServerError
from toolkit.torchserve import NO_WORKER_PHRASE

# TorchServe 0.12 answers a request its model queue has no room for with its NO_WORKER text (toolkit.torchserve;
# it sends the same when the model has no worker at all), over REST as 503 ServiceUnavailableException, over
# gRPC as INTERNAL (500) with InternalServerException (measured on 0.12.0), so the text is what tells; our Ray
# Serve ingress sends the same answer. A 503 for a failed batch (PREDICTION_FAILED) is not busy.
_BUSY_TEXT = NO_WORKER_PHRASE.lower()


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


def is_busy(status: int, message: str) -> bool:
    """Whether an error answer means "no room now, try later": 429 (gRPC RESOURCE_EXHAUSTED), or a 503 (gRPC:
    500) whose message is TorchServe's full-queue text (which our Ray ingress sends too)."""
    return status == 429 or (status in (500, 503) and _BUSY_TEXT in message.lower())


def busy_or_same(exc: ServerError) -> ServerError:
    """A prediction's error as ServerBusyError when `is_busy` says the server had no room for it, else `exc`;
    its status is 503 whatever the protocol (429 stays 429). Only for predictions: a management call answered
    503 "has no worker" means what it says."""
    if isinstance(exc, ServerBusyError) or not is_busy(exc.status, exc.message):
        return exc
    return ServerBusyError(429 if exc.status == 429 else 503, exc.message, exc.kind)


def error_from_body(status: int, body: bytes | str) -> ServerError:
    """A ServerError from an HTTP status and whatever body came with it."""
    obj = parse_error_body(body)
    if obj is not None:
        return ServerError(status, str(obj["message"]), str(obj["type"]))
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return ServerError(status, text.strip() or "no message", "")
