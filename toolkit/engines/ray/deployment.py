"""The Ray Serve deployments: one batched deployment per archive, and the routing ingress.

    ArchiveModel   one `.mar` per replica, loaded by the in-process TorchServe worker
                   (toolkit.archive.worker.ArchiveWorker, the harness the archive preflight ran); requests are
                   batched by `@serve.batch` (max_batch_size = batchSize, batch_wait_timeout_s =
                   maxBatchDelay / 1000) into one `handle()` call; each answer keeps its own status. The
                   handler metrics go to Ray's metrics (toolkit.engines.ray.metrics). Given a `ModelFront` it is
                   the ingress of its own application and speaks TorchServe's API itself (token, route, 404s,
                   503 with Retry-After beyond the requests it admits): one hop from the proxy to the batch.
    Ingress        TorchServe's API routing to the model deployments through their handles: the single
                   application KubeRay runs, and (with no routes) the catch-all `/` application of the local
                   cluster, which answers `GET /ping`, unknown models and unknown paths.
"""

from __future__ import annotations

import asyncio
import json
import tempfile

from ray import serve
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request as HttpRequest
from starlette.responses import Response

from toolkit.archive.worker import Answer, ArchiveWorker, Request
from toolkit.engines.ray.front import KeyGate, ModelFront, is_prediction, path_parts, refuse, to_http, to_worker
from toolkit.engines.ray.metrics import RaySink
from toolkit.torchserve import (
    INVALID_KEY,
    MODEL_NOT_FOUND,
    NO_WORKER,
    RESOURCE_NOT_FOUND,
    VERSION_NOT_FOUND,
)


def _device(gpu_ids: list[int]) -> int | None:
    """The GPU id Ray gave this replica (the first of `ray.get_gpu_ids()`), None on CPU."""
    return int(gpu_ids[0]) if gpu_ids else None


class ArchiveModel:
    """A replica serving one archive. Constructed by Ray with the archive's path on the shared filesystem, its
    batching settings (batch size, wait in seconds) and, when it is its application's ingress, its front."""

    def __init__(self, mar: str, max_batch_size: int, batch_wait_timeout_s: float,
                 front: ModelFront | None = None) -> None:
        import ray

        self._dir = tempfile.TemporaryDirectory(prefix="ray-archive-")
        self.worker = ArchiveWorker.from_mar(mar, self._dir.name, gpu_id=_device(ray.get_gpu_ids()),
                                             metrics_sink=RaySink())
        self.batch.set_max_batch_size(max_batch_size)
        self.batch.set_batch_wait_timeout_s(batch_wait_timeout_s)
        self.front = front
        self.in_flight = 0

    @serve.batch(max_batch_size=1, batch_wait_timeout_s=0.001)
    async def batch(self, requests: list[Request]) -> list[Answer]:
        """One handler call for the whole batch, off the event loop so the next batch can gather."""
        return await asyncio.to_thread(self.worker.handle, requests)

    async def __call__(self, request: Request | HttpRequest) -> Answer | Response:
        """A worker `Request` (through a handle, from the routing Ingress) -> its Answer; an HTTP request (as
        its application's ingress) -> TorchServe's HTTP answer."""
        if isinstance(request, Request):
            return await self.batch(request)
        return await self._http(request)

    async def _http(self, request: HttpRequest) -> Response:
        if self.front is None:  # bound without a front: reachable through a handle only
            return refuse(RESOURCE_NOT_FOUND)
        refusal = self.front.refusal(request)
        if refusal is not None:
            return refusal
        if self.front.admit is not None and self.in_flight >= self.front.admit:
            return refuse(NO_WORKER, model=self.front.name)
        self.in_flight += 1
        try:
            body = await request.body()
            return to_http(await self.batch(to_worker(request, body)))
        finally:
            self.in_flight -= 1


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
        self.gate = KeyGate(inference_key, expires_at_s)
        self.routes = routes
        self.defaults = defaults

    def _handle(self, parts: list[str]) -> DeploymentHandle | Response:
        """The deployment of `/predictions/<name>[/<version>]`, or TorchServe's 404 answer."""
        name = parts[1]
        if name not in self.defaults:
            return refuse(MODEL_NOT_FOUND, model=name)
        version = parts[2] if len(parts) > 2 else self.defaults[name]
        handle = self.routes[name].get(version)
        if handle is None:
            return refuse(VERSION_NOT_FOUND, model=name, version=version)
        return handle

    async def __call__(self, request: HttpRequest) -> Response:
        if not self.gate.allows(request):
            return refuse(INVALID_KEY)
        parts = path_parts(request)
        if request.method == "GET" and parts == ["ping"]:
            return Response(json.dumps({"status": "Healthy"}), media_type="application/json")
        if not is_prediction(request.method, parts):
            return refuse(RESOURCE_NOT_FOUND)
        target = self._handle(parts)
        if isinstance(target, Response):
            return target
        forward = to_worker(request, await request.body())
        try:
            answer: Answer = await target.remote(forward)
        except BackPressureError:
            return refuse(NO_WORKER, model=parts[1])
        return to_http(answer)
