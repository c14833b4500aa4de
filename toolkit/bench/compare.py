"""Side-by-side comparisons on one server: REST vs gRPC, and the backends (ONNX Runtime, TorchScript,
AOTInductor, ExportedProgram) served.

    python -m toolkit.bench.compare [--requests 2000] [--concurrency 1 32] [--out bench/results]

Both comparisons send the same mnist JSON body (`{"image": 28x28}`) and the same tabular body, to archives
registered with the same batching: the shipped YAMLs, and mnist.yaml archived again with each of mnist's other
exports (`make models`: `mnist_aoti.pt2`, `mnist_exported.pt2`) as its model file. Every client is the same
Python asyncio closed loop (toolkit.bench.aioclient), aiohttp for REST and grpc.aio for gRPC: a fixed number of
requests at a fixed concurrency; it shares the 2 cores with the server, so its CPU share is reported beside each
figure. Latency is per request, from send to full answer, in ms; throughput in requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path

import grpc
import numpy as np
import psutil
import yaml

from toolkit.archive import build_variant
from toolkit.bench.aioclient import Outcome, PostRequest, bounded, closed_loop, percentile
from toolkit.bench.raw import served_kind
from toolkit.paths import BENCH_RESULTS, BUILD_MODELS, MODEL_CONFIGS, MODEL_STORE
from toolkit.process import free_ports
from toolkit.server.local import LocalServer

SHIPPED = ("mnist", "mnist_torchscript", "tabular", "tabular_onnx")
# Variant name -> the model file of mnist.yaml archived again under that name (its other exports).
MNIST_EXPORTS = {"mnist_aoti": "mnist_aoti.pt2", "mnist_exported": "mnist_exported.pt2"}


def bodies() -> dict[str, bytes]:
    """Model -> request body: the first held-out image / row, as JSON."""
    with np.load(BUILD_MODELS / "mnist" / "heldout.npz") as data:
        image = data["x"][0]
    with np.load(BUILD_MODELS / "tabular" / "heldout.npz") as data:
        row = data["x"][0]
    mnist = json.dumps({"image": image.tolist()}).encode()
    tabular = json.dumps({"inputs": [row.tolist()]}).encode()
    return {"mnist": mnist, "mnist_torchscript": mnist, **dict.fromkeys(MNIST_EXPORTS, mnist), "tabular": tabular,
            "tabular_onnx": tabular}


def model_store(store: Path) -> dict[str, str]:
    """Fill `store` with the shipped archives and mnist's export variants; model -> the backend it serves."""
    for name in SHIPPED:
        (store / f"{name}.mar").write_bytes((MODEL_STORE / f"{name}.mar").read_bytes())
    base = MODEL_CONFIGS / "mnist.yaml"
    archive = yaml.safe_load(base.read_text(encoding="utf-8"))["archive"]
    for name, file_name in MNIST_EXPORTS.items():
        model_file = BUILD_MODELS / "mnist" / file_name
        build_variant(base, name, store, top={"archive": {**archive, "model_file": str(model_file)}})
    return {name: served_kind(store / f"{name}.mar") for name in (*SHIPPED, *MNIST_EXPORTS)}


def summary(outcomes: list[Outcome], wall_s: float, cpu_s: float, concurrency: int) -> dict:
    """Throughput, latency percentiles (toolkit.bench.aioclient.percentile), errors and client CPU of a run."""
    latencies = [o.latency_s * 1000 for o in outcomes]
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    return {"requests": len(outcomes), "concurrency": concurrency, "errors": sum(o.status != 200 for o in outcomes),
            "rps": round(len(outcomes) / wall_s, 1), "p50_ms": round(p50 or 0.0, 2), "p99_ms": round(p99 or 0.0, 2),
            "client_cpu_pct": round(100 * cpu_s / wall_s, 1)}


async def measured(run: Awaitable[list[Outcome]], concurrency: int) -> dict:
    """Await one closed-loop run and summarise it with its wall time and this process's CPU time."""
    cpu0, wall0 = psutil.Process().cpu_times(), time.perf_counter()
    outcomes = await run
    wall, cpu1 = time.perf_counter() - wall0, psutil.Process().cpu_times()
    return summary(outcomes, wall, cpu1.user + cpu1.system - cpu0.user - cpu0.system, concurrency)


async def rest_run(server: LocalServer, model: str, body: bytes, requests: int, concurrency: int) -> dict:
    request = PostRequest(f"/predictions/{model}", body)
    loop = closed_loop(server.urls.inference, server.read_keys().inference, [request], total=requests,
                       concurrency=concurrency)
    return await measured(loop, concurrency)


async def grpc_run(server: LocalServer, model: str, body: bytes, requests: int, concurrency: int) -> dict:
    from toolkit.client.grpc_gen import inference_pb2, inference_pb2_grpc

    metadata = (("authorization", f"Bearer {server.read_keys().inference}"),)
    request = inference_pb2.PredictionsRequest(model_name=model, input={"data": body})
    async with grpc.aio.insecure_channel(server.urls.grpc_inference) as channel:
        stub = inference_pb2_grpc.InferenceAPIsServiceStub(channel)
        start = time.monotonic()

        async def call(index: int) -> Outcome:
            sent = time.monotonic() - start
            answer = await stub.Predictions(request, metadata=metadata)
            status = 500 if b'"code"' in answer.prediction[:10] else 200  # our handlers' error body
            return Outcome(index, sent, time.monotonic() - start, status)

        return await measured(bounded(call, requests, concurrency), concurrency)


def compare(server: LocalServer, backends: dict[str, str], requests: int, concurrencies: list[int]) -> list[dict]:
    """Every (model, protocol, concurrency) cell, warm-up excluded; `backends`: model -> the backend it serves."""
    cells = []
    for model, body in bodies().items():
        for protocol, run in (("rest", rest_run), ("grpc", grpc_run)):
            asyncio.run(run(server, model, body, 200, 8))  # warm-up
            for concurrency in concurrencies:
                result = asyncio.run(run(server, model, body, requests, concurrency))
                cells.append({"model": model, "backend": backends[model], "protocol": protocol, **result})
                print(f"{model:17s} {protocol:4s} c={concurrency:<3d} {result['rps']:8.1f} req/s "
                      f"p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:6.2f} ms  errors {result['errors']}")
    return cells


def markdown(cells: list[dict]) -> str:
    lines = ["| archive | backend | protocol | concurrency | req/s | p50 ms | p99 ms | errors | client CPU % |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        lines.append(f"| {c['model']} | {c['backend']} | {c['protocol']} | {c['concurrency']} | "
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
        store = Path(run_dir) / "store"
        store.mkdir()
        backends = model_store(store)
        server = LocalServer(Path(run_dir) / "run", model_store=store, models=[f"{m}.mar" for m in backends],
                             ports=free_ports())
        with server.running():
            cells = compare(server, backends, args.requests, args.concurrency)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"compare-{stamp}.json").write_text(json.dumps(cells, indent=2))
    (args.out / f"compare-{stamp}.md").write_text(markdown(cells))
    print(markdown(cells))
    print(f"wrote {args.out / f'compare-{stamp}.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
