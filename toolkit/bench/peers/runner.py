"""The peers phase of the bench: every system started fresh, warmed the same, measured with the same wrk load.

Systems (all on the same trained mnist model, as its TorchScript file or, for `ours`, as the archive serves it
(the ONNX export), and the same `{"image": 28x28}` JSON body):
    ours: TorchServe      our archive as config/models/mnist.yaml ships it, config/config.properties
    ours: TorchServe, TorchScript   the same from config/models/mnist_torchscript.yaml (the other backend)
    ours: Ray engine      the same archive on toolkit.engines.ray (two local nodes, one CPU each)
    FastAPI single        toolkit.bench.peers.fastapi_app --mode single (one forward per request)
    FastAPI batcher       toolkit.bench.peers.fastapi_app --mode batch (asyncio batcher, 32, 5 ms)
    TorchServe plain      toolkit.bench.peers.ts_plain (minimal BaseHandler, OMP_NUM_THREADS=1, batch 32)
    Ray tutorial          toolkit.bench.peers.ray_tutorial (FastAPI ingress + @serve.batch(32, 5 ms))

For each: start, time to ready, then `warmup_s` of wrk load at c32 whose first `first_s` seconds are recorded
on their own (the warm start: throughput in the first seconds after ready against the steady figure), then
one cell per concurrency; CPU of the system's whole process tree (and the machine) around each cell. Ours
also gets multi-input cells: 16 images per request as JSON, `.npy` and a JSON list of base64 PNGs.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import requests
from PIL import Image

from toolkit.bench.loadgen import Request, run_load
from toolkit.engines.ray.cluster import LocalRayCluster
from toolkit.paths import ROOT
from toolkit.polling import poll_until
from toolkit.process import free_ports, stop_family
from toolkit.server.local import LocalServer

Log = Callable[[str], None]
READY_TIMEOUT_S = 300.0
MULTI_N = 16


@dataclass
class Running:
    """A started system: its inference base URL, bearer key, and the pids whose process trees are its CPU."""

    url: str
    key: str
    pids: list[int]
    ready_s: float = 0.0


def _tree(pids: list[int]) -> Iterator[psutil.Process]:
    """The processes `pids` and all their descendants that still exist."""
    for pid in pids:
        try:
            root = psutil.Process(pid)
            yield from [root, *root.children(recursive=True)]
        except psutil.Error:
            continue


def tree_cpu_s(pids: list[int]) -> float:
    """User+system CPU seconds of the processes `pids` and all their descendants, now."""
    total = 0.0
    for proc in _tree(pids):
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            total += t.user + t.system
    return total


def tree_rss_mib(pids: list[int]) -> float:
    """Resident memory (MiB) of the processes `pids` and all their descendants, now."""
    total = 0
    for proc in _tree(pids):
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return round(total / 2**20, 1)


def machine_busy_s() -> float:
    t = psutil.cpu_times()
    return t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


def wait_answering(url: str, key: str, body: bytes, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Until `POST url/predictions/mnist` answers 200 (ServerStartError-like RuntimeError otherwise)."""
    last: list[str | None] = [None]

    def answered() -> bool:
        try:
            resp = requests.post(f"{url}/predictions/mnist", data=body, timeout=10,
                                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        except requests.RequestException as exc:
            last[0] = type(exc).__name__
            return False
        last[0] = f"HTTP {resp.status_code}: {resp.text[:200]}"
        return resp.status_code == 200

    if not poll_until(answered, timeout_s):
        raise RuntimeError(f"{url} not answering after {timeout_s:g} s: {last[0]}")


def measure(running: Running, body_file: Path, ctype: str, concurrency: int, duration_s: float,
            path: str = "/predictions/mnist") -> dict:
    """One wrk cell with the system's and the machine's CPU (% of one core) around it."""
    request = Request(f"{running.url}{path}", "POST", body_file, ctype)
    cpu0, busy0, t0 = tree_cpu_s(running.pids), machine_busy_s(), time.monotonic()
    load = run_load(request, running.key, concurrency, duration_s)
    wall = time.monotonic() - t0
    cpu1, busy1 = tree_cpu_s(running.pids), machine_busy_s()
    return {"concurrency": concurrency, "load": load.to_dict(),
            "system_cpu_pct": round(100 * (cpu1 - cpu0) / wall, 1),
            "machine_cpu_pct": round(100 * (busy1 - busy0) / wall, 1)}


# ------------------------------------------------------------------------------------------- the systems


@contextlib.contextmanager
def subprocess_server(cmd: list[str], log_file: Path, env: dict | None = None) -> Iterator[subprocess.Popen]:
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
                                start_new_session=True)
    try:
        yield proc
    finally:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(proc.pid)
            family = [root, *root.children(recursive=True)]
            proc.terminate()
            stop_family(family, 20)
        proc.wait(timeout=30)


@contextlib.contextmanager
def fastapi_peer(mode: str, ctx: dict, work: Path, body: bytes) -> Iterator[Running]:
    port = free_ports().inference
    cmd = [sys.executable, "-m", "toolkit.bench.peers.fastapi_app", "--model-file", str(ctx["model_file"]),
           "--port", str(port), "--mode", mode, "--max-batch", "32", "--wait-ms", "5", "--threads", "1"]
    begin = time.monotonic()
    with subprocess_server(cmd, work / f"fastapi-{mode}.log") as proc:
        url = f"http://127.0.0.1:{port}"
        wait_answering(url, "", body)
        yield Running(url, "", [proc.pid], time.monotonic() - begin)


class _OmpServer(LocalServer):
    """A LocalServer whose workers get OMP_NUM_THREADS=1 (the plain peer's setting)."""

    def env(self) -> dict[str, str]:
        return {**super().env(), "OMP_NUM_THREADS": "1"}


@contextlib.contextmanager
def torchserve(ctx: dict, work: Path, store: Path, archive: str, name: str, omp1: bool = False) -> Iterator[Running]:
    cls = _OmpServer if omp1 else LocalServer
    server = cls(work / f"ts-{name}", ctx["config"], store, [f"mnist={archive}"], ports=free_ports())
    begin = time.monotonic()
    try:
        server.start()
        server.wait_ready(READY_TIMEOUT_S)
        running = Running(server.urls.inference, server.read_keys().inference, [server.frontend_pid], 0.0)
        wait_answering(running.url, running.key, ctx["json_body"])
        running.ready_s = time.monotonic() - begin
        yield running
    finally:
        server.stop()


def _ips() -> list[str]:
    a, b = random.randrange(10, 250), random.randrange(10, 250)
    return [f"127.{a}.{b}.2", f"127.{a}.{b}.3"]


@contextlib.contextmanager
def ray_engine(ctx: dict, work: Path, store: Path, archive: str) -> Iterator[Running]:
    """Our Ray engine through its own command line (`python -m toolkit.engines.ray start|stop`)."""
    run_dir, port = work / "ray-engine", free_ports().inference
    base = [sys.executable, "-m", "toolkit.engines.ray"]
    begin = time.monotonic()
    try:
        done = subprocess.run([*base, "start", "--run-dir", str(run_dir), "--model-store", str(store),
                               "--archives", archive, "--ips", *_ips(), "--free-ports", "--http-port", str(port)],
                              cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"ray engine did not start: {done.stdout[-1500:]}\n{done.stderr[-1500:]}")
        key = json.loads((run_dir / "key_file.json").read_text())["inference"]["key"]
        state = json.loads((run_dir / "cluster.json").read_text())
        url = f"http://127.0.0.1:{port}"
        wait_answering(url, key, ctx["json_body"])
        yield Running(url, key, [n["pid"] for n in state["nodes"]], time.monotonic() - begin)
    finally:
        subprocess.run([*base, "stop", "--run-dir", str(run_dir)], cwd=ROOT, capture_output=True, timeout=300,
                       check=False)


@contextlib.contextmanager
def ray_tutorial(ctx: dict, work: Path) -> Iterator[Running]:
    """The tutorial pattern on a LocalRayCluster of its own (the same two nodes as our engine gets)."""
    cluster, port = LocalRayCluster(work / "ray-tutorial"), free_ports().inference
    begin = time.monotonic()
    try:
        state = cluster.start(_ips(), 1, None, port)
        done = subprocess.run([sys.executable, "-m", "toolkit.bench.peers.ray_tutorial", "--address", state.address,
                               "--http-port", str(port), "--model-file", str(ctx["model_file"]), "--replicas", "2"],
                              cwd=ROOT, env=cluster.env(), capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"ray tutorial did not deploy: {done.stdout[-1500:]}\n{done.stderr[-1500:]}")
        url = f"http://127.0.0.1:{port}"
        wait_answering(url, "", ctx["json_body"])
        yield Running(url, "", [n.pid for n in state.nodes if n.pid], time.monotonic() - begin)
    finally:
        cluster.stop()


# ----------------------------------------------------------------------------------------------- bodies


def multi_bodies(heldout: Path, into: Path, n: int = MULTI_N) -> dict[str, tuple[Path, str]]:
    """Bodies of `n` held-out images in one request: kind -> (file, content type)."""
    with np.load(heldout) as data:
        images = data["x"][:n]
    into.mkdir(parents=True, exist_ok=True)
    npy = io.BytesIO()
    np.save(npy, images, allow_pickle=False)
    pngs = []
    for image in images:
        buf = io.BytesIO()
        Image.fromarray(image, mode="L").save(buf, format="PNG")
        pngs.append(base64.b64encode(buf.getvalue()).decode())
    bodies = {"json": (json.dumps({"image": images.tolist()}, separators=(",", ":")).encode(), "application/json"),
              "npy": (npy.getvalue(), "application/x-npy"),
              "png_list": (json.dumps({"image": pngs}).encode(), "application/json")}
    out = {}
    for kind, (body, ctype) in bodies.items():
        path = into / f"multi{n}.{kind}"
        path.write_bytes(body)
        out[kind] = (path, ctype)
    return out


# ------------------------------------------------------------------------------------------------ phase


def systems(ctx: dict, work: Path, store: Path) -> dict[str, Callable[[], contextlib.AbstractContextManager]]:
    from toolkit.bench.peers import ts_plain

    plain = ts_plain.build_archive(ctx["model_file"], work / "plain", store)
    shipped = ctx["shipped_archive"]
    found = {
        "ours: TorchServe": lambda: torchserve(ctx, work, store, shipped, "ours"),
        "ours: TorchServe, TorchScript": lambda: torchserve(ctx, work, store, ctx["torchscript_archive"], "ours-ts"),
        "ours: Ray engine": lambda: ray_engine(ctx, work, store, shipped),
        "FastAPI single": lambda: fastapi_peer("single", ctx, work, ctx["json_body"]),
        "FastAPI batcher": lambda: fastapi_peer("batch", ctx, work, ctx["json_body"]),
        "TorchServe plain": lambda: torchserve(ctx, work, store, plain, "plain", omp1=True),
        "Ray tutorial": lambda: ray_tutorial(ctx, work),
    }
    if not ctx.get("torchscript_archive"):
        del found["ours: TorchServe, TorchScript"]
    return found


def run_system(name: str, start, ctx: dict, work: Path, log: Log) -> dict:
    payload = ctx["payloads"]["json"]
    warm, first = ctx["peer_warmup_s"], min(ctx["peer_first_s"], ctx["peer_warmup_s"])
    row: dict = {"system": name, "cells": []}
    with start() as running:
        row["ready_s"] = round(running.ready_s, 2)
        row["first"] = measure(running, payload.path, payload.content_type, 32, first)
        if warm - first >= 1:
            run_load(Request(f"{running.url}/predictions/mnist", "POST", payload.path, payload.content_type),
                     running.key, 32, warm - first)
        for concurrency in ctx["peer_concurrencies"]:
            row["cells"].append({"input": "json", **measure(running, payload.path, payload.content_type,
                                                            concurrency, ctx["peer_duration_s"])})
        if name.startswith("ours"):
            for kind, (path, ctype) in ctx["multi_bodies"].items():
                cell = measure(running, path, ctype, 8, ctx["peer_duration_s"])
                cell["images_per_s"] = round(cell["load"]["throughput_rps"] * MULTI_N, 1)
                row["cells"].append({"input": f"{MULTI_N}x {kind}", **cell})
        row["rss_mib"] = tree_rss_mib(running.pids)
    summary = ", ".join(f"{c['input']} c{c['concurrency']} {c['load']['throughput_rps']:.0f} rps "
                        f"p99 {c['load']['latency_ms']['p99']:.1f}" for c in row["cells"])
    log(f"peer {name}: ready {row['ready_s']} s, first {first:g} s {row['first']['load']['throughput_rps']:.0f} "
        f"rps; {summary}")
    return row


def run_peers(ctx: dict, work: Path, log: Log, rows: list[dict]) -> list[dict]:
    """Every system of `systems` one after the other (a failure is recorded, the others still run)."""
    store = ctx["store"]
    ctx = {**ctx, "json_body": ctx["payloads"]["json"].path.read_bytes(),
           "multi_bodies": multi_bodies(ctx["heldout"], work / "multi")}
    wanted = ctx.get("peer_systems")
    (work / "peers").mkdir(exist_ok=True)
    for name, start in systems(ctx, work / "peers", store).items():
        if wanted and name not in wanted:
            continue
        try:
            rows.append(run_system(name, start, ctx, work, log))
        except Exception as exc:  # noqa: BLE001 - one peer failing must not lose the others
            rows.append({"system": name, "error": f"{type(exc).__name__}: {exc}"[-3000:]})
            log(f"peer {name}: FAILED {exc}")
    return rows
