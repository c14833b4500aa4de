"""TorchServe's inference API at the edge of the Ray engine: bearer tokens, routes, refusals, and the conversion
between an HTTP request and the in-process worker's `Request` / `Answer`.

Shared by the two fronts of `toolkit.engines.ray.deployment`: an archive's own replica when it is the ingress of
its application (one hop: the proxy, or HAProxy, straight to the replica that batches), and the routing
`Ingress` (the single application KubeRay runs, and the catch-all `/` application that answers `/ping`, unknown
models and unknown paths). Every refusal is TorchServe's own answer from `toolkit.torchserve`.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass

from starlette.requests import Request as HttpRequest
from starlette.responses import Response

from toolkit.archive.worker import Answer, Request
from toolkit.torchserve import INVALID_KEY, RESOURCE_NOT_FOUND, VERSION_NOT_FOUND, FrontendError

PREDICT_METHODS = ("POST", "PUT")


def refuse(error: FrontendError, **fields: str) -> Response:
    """TorchServe's answer `error`, its message filled with `fields`."""
    return Response(error.body(**fields), status_code=error.status, media_type="application/json",
                    headers=error.headers())


@dataclass(frozen=True)
class KeyGate:
    """TorchServe's token check: `Authorization: Bearer <inference key>` until `expires_at_s` (epoch seconds)."""

    key: str
    expires_at_s: float

    def allows(self, request: HttpRequest) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        fresh = time.time() < self.expires_at_s
        return fresh and scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.key.encode())


def path_parts(request: HttpRequest) -> list[str]:
    """The non-empty segments of the request's path (`/predictions/mnist/1.0` -> predictions, mnist, 1.0)."""
    return [part for part in request.url.path.split("/") if part]


def is_prediction(method: str, parts: list[str]) -> bool:
    """Whether `method parts` is TorchServe's `POST|PUT /predictions/<model>[/<version>]`."""
    return method in PREDICT_METHODS and 2 <= len(parts) <= 3 and parts[0] == "predictions"


@dataclass(frozen=True)
class ModelFront:
    """The HTTP front of one archive's replica, the ingress of its own application: the token, the model it
    serves, and the requests it admits (`admit`: in flight in this replica, batching included; beyond it a new
    request gets TorchServe's 503 with Retry-After at once; None: no limit)."""

    gate: KeyGate
    name: str
    version: str
    admit: int | None

    def refusal(self, request: HttpRequest) -> Response | None:
        """TorchServe's refusal of a request this replica must not run (bad token, not a prediction of this
        model, another version of it), else None. Its application's route is `/predictions/<name>` or
        `/predictions/<name>/<version>`, so only those paths reach it."""
        if not self.gate.allows(request):
            return refuse(INVALID_KEY)
        parts = path_parts(request)
        if not is_prediction(request.method, parts) or parts[1] != self.name:
            return refuse(RESOURCE_NOT_FOUND)
        if len(parts) == 3 and parts[2] != self.version:
            return refuse(VERSION_NOT_FOUND, model=self.name, version=parts[2])
        return None


def to_worker(request: HttpRequest, body: bytes) -> Request:
    """The worker's view of an HTTP request: its body, Content-Type and headers, the token left out."""
    headers = {k.lower(): v for k, v in request.headers.items() if k.lower() != "authorization"}
    return Request(body, request.headers.get("content-type", "application/octet-stream"), headers)


def to_http(answer: Answer) -> Response:
    """One worker answer as the HTTP response: its status, content type, body and headers."""
    return Response(answer.body, status_code=answer.status, media_type=answer.content_type, headers=answer.headers)
