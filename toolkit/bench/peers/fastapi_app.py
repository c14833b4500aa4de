"""FastAPI peers: one forward per request, or an asyncio dynamic batcher (batch 32, 5 ms).

    python -m toolkit.bench.peers.fastapi_app --model-file build/models/mnist/mnist.pt --port 8123 \
        [--mode single|batch] [--max-batch 32] [--wait-ms 5] [--threads 1]

`POST /predictions/mnist` with `{"image": 28x28}` answers `{"predicted", "probabilities"}`; `GET /ping`.
One uvicorn process (no access log). `single`: each request decodes and runs its own forward in the
request's coroutine. `batch`: requests put (image, future) on an asyncio queue; one batcher task takes up to
`max_batch` of them, waiting at most `wait_ms` after the first, runs one forward in a thread and resolves the
futures. The Authorization header is ignored (the bench sends ours).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from toolkit.bench.peers.model import answer, decode, forward, load_model


class Batcher:
    """Asyncio dynamic batcher: up to `max_batch` requests per forward, `wait_s` after the first at most."""

    def __init__(self, model, max_batch: int, wait_s: float) -> None:
        self.model, self.max_batch, self.wait_s = model, max_batch, wait_s
        self.queue: asyncio.Queue = asyncio.Queue()
        self.task: asyncio.Task | None = None

    async def submit(self, image) -> list[float]:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((image, future))
        return await future

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            deadline = loop.time() + self.wait_s
            while len(items) < self.max_batch:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    items.append(await asyncio.wait_for(self.queue.get(), remaining))
                except TimeoutError:
                    break
            try:
                outputs = await asyncio.to_thread(forward, self.model, [image for image, _ in items])
            except Exception as exc:  # every waiting request gets the error
                for _, future in items:
                    future.set_exception(exc)
                continue
            for (_, future), output in zip(items, outputs, strict=True):
                future.set_result(output)


def build_app(model_file: str, mode: str, max_batch: int, wait_ms: float, threads: int) -> FastAPI:
    model = load_model(model_file, threads)
    batcher = Batcher(model, max_batch, wait_ms / 1000) if mode == "batch" else None

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        if batcher is not None:
            batcher.task = asyncio.create_task(batcher.run())
        yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/ping")
    async def ping() -> dict:
        return {"status": "Healthy"}

    @app.post("/predictions/mnist")
    async def predict(request: Request) -> JSONResponse:
        try:
            image = decode(await request.body())
        except (ValueError, KeyError, TypeError) as exc:
            return JSONResponse({"code": 400, "message": str(exc)}, status_code=400)
        if batcher is not None:
            output = await batcher.submit(image)
        else:
            output = forward(model, [image])[0]
        return JSONResponse(answer(output))

    return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m toolkit.bench.peers.fastapi_app", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-file", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=["single", "batch"], default="batch")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--wait-ms", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    app = build_app(args.model_file, args.mode, args.max_batch, args.wait_ms, args.threads)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
