"""The Ray Serve deployments: one batched deployment per archive, and one ingress speaking TorchServe's API.

    ArchiveModel   one `.mar` per replica, loaded by the in-process TorchServe worker
                   (toolkit.archive.worker.ArchiveWorker, the harness the archive preflight ran); requests are
                   batched by `@serve.batch` (max_batch_size = batchSize, batch_wait_timeout_s =
                   maxBatchDelay / 1000) into one `handle()` call; each answer keeps its own status. The
                   handler metrics go to Ray's metrics (toolkit.engines.ray.metrics).
    Ingress        the HTTP front on Ray's proxy: `POST /predictions/<model>[/<version>]`, `GET /ping`,
                   TorchServe's bearer tokens (a missing or wrong token is refused with TorchServe's 400
                   InvalidKeyException body), TorchServe's 404 bodies, and TorchServe's 503 (with Retry-After)
                   when a model's queue (`max_queued_requests`) is full: the answers of toolkit.torchserve.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import tempfile
import time

from ray import serve
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request as HttpRequest
from starlette.responses import Response

from toolkit.archive.worker import Answer, ArchiveWorker, Request
from toolkit.engines.ray.metrics import RaySink
from toolkit.torchserve import (
    INVALID_KEY,
    MODEL_NOT_FOUND,
    NO_WORKER,
    RESOURCE_NOT_FOUND,
    VERSION_NOT_FOUND,
    FrontendError,
)


def _device(gpu_ids: list[int]) -> int | None:
    """The GPU id Ray gave this replica (the first of `ray.get_gpu_ids()`), None on CPU."""
    return int(gpu_ids[0]) if gpu_ids else None


class ArchiveModel:
    """A replica serving one archive. Constructed by Ray with the archive's path on the shared filesystem and
    its batching settings (batch size, wait in seconds)."""

    def __init__(self, mar: str, max_batch_size: int, batch_wait_timeout_s: float) -> None:
        import ray

        self._dir = tempfile.TemporaryDirectory(prefix="ray-archive-")
        self.worker = ArchiveWorker.from_mar(mar, self._dir.name, gpu_id=_device(ray.get_gpu_ids()),
                                             metrics_sink=RaySink())
        self.batch.set_max_batch_size(max_batch_size)
        self.batch.set_batch_wait_timeout_s(batch_wait_timeout_s)

    @serve.batch(max_batch_size=1, batch_wait_timeout_s=0.001)
    async def batch(self, requests: list[Request]) -> list[Answer]:
        """One handler call for the whole batch, off the event loop so the next batch can gather."""
        return await asyncio.to_thread(self.worker.handle, requests)

    async def __call__(self, request: Request) -> Answer:
        return await self.batch(request)


def _refuse(error: FrontendError, **fields: str) -> Response:
    """TorchServe's answer `error`, its message filled with `fields`."""
    return Response(error.body(**fields), status_code=error.status, media_type="application/json",
                    headers=error.headers())


class Ingress:
    """TorchServe's inference API over the model deployments. `inference_key` is the bearer token every
    request must carry until `expires_at_s` (epoch seconds); `routes` maps model name -> version ->
    deployment handle; `defaults` names the version a bare `/predictions/<name>` reaches."""

    def __init__(
        self,
        inference_key: str,
        expires_at_s: float,
        routes: dict[str, dict[str, DeploymentHandle]],
        defaults: dict[str, str],
    ) -> None:
        self.key = inference_key.encode()
        self.expires_at_s = expires_at_s
        self.routes = routes
        self.defaults = defaults

    def _authorized(self, request: HttpRequest) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        fresh = time.time() < self.expires_at_s
        return fresh and scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.key)

    def _handle(self, parts: list[str]) -> DeploymentHandle | Response:
        """The deployment of `/predictions/<name>[/<version>]`, or TorchServe's 404 answer."""
        name = parts[1] if len(parts) > 1 else ""
        if name not in self.defaults:
            return _refuse(MODEL_NOT_FOUND, model=name)
        version = parts[2] if len(parts) > 2 else self.defaults[name]
        handle = self.routes[name].get(version)
        if handle is None:
            return _refuse(VERSION_NOT_FOUND, model=name, version=version)
        return handle

    async def __call__(self, request: HttpRequest) -> Response:
        if not self._authorized(request):
            return _refuse(INVALID_KEY)
        parts = [p for p in request.url.path.split("/") if p]
        if request.method == "GET" and parts == ["ping"]:
            return Response(json.dumps({"status": "Healthy"}), media_type="application/json")
        if request.method not in ("POST", "PUT") or not parts or parts[0] != "predictions" or len(parts) > 3:
            return _refuse(RESOURCE_NOT_FOUND)
        target = self._handle(parts)
        if isinstance(target, Response):
            return target
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items() if k.lower() != "authorization"}
        forward = Request(body, request.headers.get("content-type", "application/octet-stream"), headers)
        try:
            answer: Answer = await target.remote(forward)
        except BackPressureError:
            return _refuse(NO_WORKER, model=parts[1])
        return Response(answer.body, status_code=answer.status, media_type=answer.content_type, headers=answer.headers)
