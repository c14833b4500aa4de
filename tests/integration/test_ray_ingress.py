"""The Ray Serve ingress (toolkit.engines.ray.deployment.Ingress) without a cluster: real Starlette requests in,
TorchServe's answers out (toolkit.torchserve), read back by our REST client's error parser as TorchServe's own.

Ray's deployment handles are stood in for by `Replica`, whose `remote()` answers or raises Ray's own
BackPressureError as a handle does when a deployment's queue (`max_queued_requests`) is full.
"""

from __future__ import annotations

import asyncio
import json
import time

from ray.serve.exceptions import BackPressureError
from starlette.requests import Request as HttpRequest
from starlette.responses import Response

from toolkit.archive.worker import Answer, Request
from toolkit.client.error_body import busy_or_same, error_from_body
from toolkit.engines.ray.deployment import Ingress
from toolkit.errors import ServerBusyError
from toolkit.torchserve import INVALID_KEY, MODEL_NOT_FOUND, NO_WORKER, RESOURCE_NOT_FOUND, VERSION_NOT_FOUND

KEY = "k" * 64


class Replica:
    """A deployment handle's stand-in: `remote(request)` answers 200 with the body it got, or, when `full`,
    raises BackPressureError as Ray's handle does for a full queue."""

    def __init__(self, full: bool = False) -> None:
        self.full = full
        self.seen: list[Request] = []

    def remote(self, request: Request):
        self.seen.append(request)

        async def answer() -> Answer:
            if self.full:
                raise BackPressureError(num_queued_requests=4, max_queued_requests=4)
            return Answer(200, "application/json", json.dumps({"echo": request.body.decode()}).encode())

        return answer()


def call(ingress: Ingress, method: str, path: str, key: str | None = KEY, body: bytes = b"{}") -> Response:
    headers = [(b"content-type", b"application/json")]
    if key is not None:
        headers.append((b"authorization", f"Bearer {key}".encode()))
    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": headers, "scheme": "http", "server": ("127.0.0.1", 8000), "root_path": ""}  # fmt: skip

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    return asyncio.run(ingress(HttpRequest(scope, receive)))


def ingress(full: bool = False, expires_at_s: float | None = None) -> tuple[Ingress, Replica]:
    replica = Replica(full)
    routes = {"mnist": {"1.0": replica}}
    return Ingress(KEY, expires_at_s or time.time() + 60, routes, {"mnist": "1.0"}), replica  # type: ignore[dict-item]


def test_a_prediction_reaches_the_default_version_without_the_token() -> None:
    front, replica = ingress()
    answer = call(front, "POST", "/predictions/mnist", body=b'{"x": 1}')
    assert (answer.status_code, json.loads(answer.body)) == (200, {"echo": '{"x": 1}'})
    assert replica.seen[0].content_type == "application/json"
    assert "authorization" not in replica.seen[0].headers, "the key is not handed to the handler"


def test_a_missing_wrong_or_expired_token_gets_torchserve_s_400() -> None:
    front, replica = ingress()
    expired, _ = ingress(expires_at_s=time.time() - 1)
    for answer in (call(front, "POST", "/predictions/mnist", key=None), call(front, "GET", "/ping", key="wrong"),
                   call(expired, "POST", "/predictions/mnist")):  # fmt: skip
        assert (answer.status_code, answer.body) == (400, INVALID_KEY.body())
    assert replica.seen == []


def test_unknown_model_version_and_path_get_torchserve_s_404s() -> None:
    front, _ = ingress()
    cases = [("POST", "/predictions/nope", MODEL_NOT_FOUND.body(model="nope")),
             ("POST", "/predictions/mnist/9.9", VERSION_NOT_FOUND.body(model="mnist", version="9.9")),
             ("GET", "/predictions/mnist", RESOURCE_NOT_FOUND.body()),
             ("POST", "/models", RESOURCE_NOT_FOUND.body())]  # fmt: skip
    for method, path, body in cases:
        answer = call(front, method, path)
        assert (answer.status_code, answer.body) == (404, body), path
        assert error_from_body(404, answer.body).message == json.loads(body)["message"]


def test_a_full_queue_is_torchserve_s_503_with_retry_after_and_our_client_retries_it() -> None:
    front, _ = ingress(full=True)
    answer = call(front, "POST", "/predictions/mnist")
    assert (answer.status_code, answer.body) == (503, NO_WORKER.body(model="mnist"))
    assert answer.headers["retry-after"] == "1"
    assert isinstance(busy_or_same(error_from_body(503, answer.body)), ServerBusyError)
