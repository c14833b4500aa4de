"""Side-by-side comparisons on one server: REST vs gRPC, and TorchScript vs ONNX Runtime.

    python -m toolkit.bench.compare [--requests 2000] [--concurrency 1 32] [--out bench/results]

Both comparisons send the same mnist JSON body (`{"image": 28x28}`) and the same tabular body, to archives
registered with the same batching (the shipped YAMLs). Every client is a Python asyncio client of the same
shape, aiohttp for REST and grpc.aio for gRPC, a fixed number of requests at a fixed concurrency (closed loop);
it shares the 2 cores with the server, so its CPU share is reported beside each figure. Latency is per request,
from send to full answer, in ms; throughput in requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import grpc
import numpy as np
import psutil

from toolkit.paths import BENCH_RESULTS, BUILD_MODELS
from toolkit.server.local import LocalServer
from toolkit.server.process import free_ports

MODELS = ("mnist", "mnist_onnx", "tabular", "tabular_onnx")


def bodies() -> dict[str, bytes]:
    """Model -> request body: the first held-out image / row, as JSON."""
    with np.load(BUILD_MODELS / "mnist" / "heldout.npz") as data:
        image = data["x"][0]
    with np.load(BUILD_MODELS / "tabular" / "heldout.npz") as data:
        row = data["x"][0]
    mnist = json.dumps({"image": image.tolist()}).encode()
    tabular = json.dumps({"inputs": [row.tolist()]}).encode()
    return {"mnist": mnist, "mnist_onnx": mnist, "tabular": tabular, "tabular_onnx": tabular}


async def closed_loop(call: Callable[[], Awaitable[bool]], requests: int, concurrency: int) -> dict:
    """Run `call` `requests` times with `concurrency` in flight; throughput, latency percentiles, errors."""
    latencies: list[float] = []
    errors = 0
    remaining = iter(range(requests))

    async def client() -> None:
        nonlocal errors
        for _ in remaining:
            start = time.perf_counter()
            ok = await call()
            latencies.append((time.perf_counter() - start) * 1000)
            errors += not ok

    cpu0, wall0 = psutil.Process().cpu_times(), time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall, cpu1 = time.perf_counter() - wall0, psutil.Process().cpu_times()
    cuts = statistics.quantiles(latencies, n=100)
    return {"requests": requests, "concurrency": concurrency, "errors": errors, "rps": round(requests / wall, 1),
            "p50_ms": round(cuts[49], 2), "p99_ms": round(cuts[98], 2),
            "client_cpu_pct": round(100 * (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / wall, 1)}


async def rest_run(server: LocalServer, model: str, body: bytes, requests: int, concurrency: int) -> dict:
    headers = {"Authorization": f"Bearer {server.read_keys().inference}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(server.urls.inference, headers=headers) as session:

        async def call() -> bool:
            async with session.post(f"/predictions/{model}", data=body) as response:
                await response.read()
                return response.status == 200

        return await closed_loop(call, requests, concurrency)


async def grpc_run(server: LocalServer, model: str, body: bytes, requests: int, concurrency: int) -> dict:
    from toolkit.client.grpc_gen import inference_pb2, inference_pb2_grpc

    metadata = (("authorization", f"Bearer {server.read_keys().inference}"),)
    request = inference_pb2.PredictionsRequest(model_name=model, input={"data": body})
    async with grpc.aio.insecure_channel(server.urls.grpc_inference) as channel:
        stub = inference_pb2_grpc.InferenceAPIsServiceStub(channel)

        async def call() -> bool:
            answer = await stub.Predictions(request, metadata=metadata)
            return b'"code"' not in answer.prediction[:10]

        return await closed_loop(call, requests, concurrency)


def compare(server: LocalServer, requests: int, concurrencies: list[int]) -> list[dict]:
    """Every (model, protocol, concurrency) cell, warm-up excluded."""
    cells = []
    for model, body in bodies().items():
        for protocol, run in (("rest", rest_run), ("grpc", grpc_run)):
            asyncio.run(run(server, model, body, 200, 8))  # warm-up
            for concurrency in concurrencies:
                result = asyncio.run(run(server, model, body, requests, concurrency))
                cells.append({"model": model, "protocol": protocol, **result})
                print(f"{model:13s} {protocol:4s} c={concurrency:<3d} {result['rps']:8.1f} req/s "
                      f"p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:6.2f} ms  errors {result['errors']}")
    return cells


def markdown(cells: list[dict]) -> str:
    lines = ["| model | backend | protocol | concurrency | req/s | p50 ms | p99 ms | errors | client CPU % |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        backend = "onnxruntime" if c["model"].endswith("_onnx") else "torchscript"
        lines.append(f"| {c['model'].removesuffix('_onnx')} | {backend} | {c['protocol']} | {c['concurrency']} | "
                     f"{c['rps']} | {c['p50_ms']} | {c['p99_ms']} | {c['errors']} | {c['client_cpu_pct']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="requests per cell")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--out", type=Path, default=BENCH_RESULTS)
    args = parser.parse_args(argv)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    with tempfile.TemporaryDirectory(prefix="compare-") as run_dir:
        server = LocalServer(run_dir, models=[f"{m}.mar" for m in MODELS], ports=free_ports())
        with server.running():
            cells = compare(server, args.requests, args.concurrency)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"compare-{stamp}.json").write_text(json.dumps(cells, indent=2))
    (args.out / f"compare-{stamp}.md").write_text(markdown(cells))
    print(markdown(cells))
    print(f"wrote {args.out / f'compare-{stamp}.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
