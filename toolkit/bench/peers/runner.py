"""The peers phase of the bench: every system started fresh, warmed the same, measured with the same wrk load.

Systems (all on the same trained mnist model, as its TorchScript file or, for `ours`, as the archive serves it
(the ONNX export), and the same `{"image": 28x28}` JSON body):
    ours: TorchServe      our archive as config/models/mnist.yaml ships it, config/config.properties
    ours: TorchServe, TorchScript   the same from config/models/mnist_torchscript.yaml (the other backend)
    ours: Ray engine      the same archive on toolkit.engines.ray (two local nodes, one CPU each), as it ships
    ours: Ray engine [t]  the same with the Serve settings `t` (`--ray-tunings`, toolkit.engines.ray.tuning)
    FastAPI single        toolkit.bench.peers.fastapi_app --mode single (one forward per request)
    FastAPI batcher       toolkit.bench.peers.fastapi_app --mode batch (asyncio batcher, 32, 5 ms)
    TorchServe plain      toolkit.bench.peers.ts_plain (minimal BaseHandler, OMP_NUM_THREADS=1, batch 32)
    Ray tutorial          toolkit.bench.peers.ray_tutorial (FastAPI ingress + @serve.batch(32, 5 ms))

For each: start, time to ready, then `warmup_s` of wrk load at c32 whose first `first_s` seconds are recorded
on their own (the warm start: throughput in the first seconds after ready against the steady figure), then
one cell per concurrency; CPU of the system's whole process tree (and the machine) around each cell. Ours
(not its tuned variants) also gets multi-input cells: 16 images per request as JSON, `.npy` and a JSON list of
base64 PNGs.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import psutil
import requests
from PIL import Image

from toolkit.bench.loadgen import LoadRequest, run_load
from toolkit.bench.payloads import Payload
from toolkit.bench.plan import BenchPlan, PeerPlan, Prepared
from toolkit.bench.results import PeerCell, PeerFailure, PeerRun
from toolkit.engines.ray.cluster import LocalRayCluster
from toolkit.paths import ROOT
from toolkit.polling import poll_until
from toolkit.process import free_ports, stop_family
from toolkit.server.local import LocalServer

Log = Callable[[str], None]
Starter = Callable[[], contextlib.AbstractContextManager["Running"]]
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


def measure(running: Running, body: Payload, concurrency: int, duration_s: float,
            path: str = "/predictions/mnist") -> PeerCell:
    """One wrk cell with the system's and the machine's CPU (% of one core) around it."""
    request = LoadRequest(f"{running.url}{path}", "POST", body.path, body.content_type)
    cpu0, busy0, t0 = tree_cpu_s(running.pids), machine_busy_s(), time.monotonic()
    load = run_load(request, running.key, concurrency, duration_s)
    wall = time.monotonic() - t0
    cpu1, busy1 = tree_cpu_s(running.pids), machine_busy_s()
    return PeerCell(body.kind, concurrency, load, system_cpu_pct=round(100 * (cpu1 - cpu0) / wall, 1),
                    machine_cpu_pct=round(100 * (busy1 - busy0) / wall, 1))


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
def fastapi_peer(mode: str, model_file: Path, work: Path, body: bytes) -> Iterator[Running]:
    port = free_ports().inference
    cmd = [sys.executable, "-m", "toolkit.bench.peers.fastapi_app", "--model-file", str(model_file),
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
def torchserve(config: Path, work: Path, store: Path, archive: str, name: str, body: bytes,
               omp1: bool = False) -> Iterator[Running]:
    cls = _OmpServer if omp1 else LocalServer
    server = cls(work / f"ts-{name}", config, store, [f"mnist={archive}"], ports=free_ports())
    begin = time.monotonic()
    try:
        server.start()
        server.wait_ready(READY_TIMEOUT_S)
        running = Running(server.urls.inference, server.read_keys().inference, [server.frontend_pid], 0.0)
        wait_answering(running.url, running.key, body)
        running.ready_s = time.monotonic() - begin
        yield running
    finally:
        server.stop()


def _ips() -> list[str]:
    a, b = random.randrange(10, 250), random.randrange(10, 250)
    return [f"127.{a}.{b}.2", f"127.{a}.{b}.3"]


RAY_ENGINE = "ours: Ray engine"


def tuned_name(tuning: str) -> str:
    """The system name of the Ray engine with the `--tune` items `tuning` (space-separated)."""
    return f"{RAY_ENGINE} [{tuning}]"


@contextlib.contextmanager
def ray_engine(work: Path, store: Path, archive: str, body: bytes, tuning: str = "") -> Iterator[Running]:
    """Our Ray engine through its own command line (`python -m toolkit.engines.ray start|stop`), with the
    `--tune` items `tuning` (space-separated; '' for the engine as it ships)."""
    run_dir, port = work / re.sub(r"[^A-Za-z0-9]+", "-", f"ray-engine {tuning}".strip()), free_ports().inference
    base = [sys.executable, "-m", "toolkit.engines.ray"]
    tune = ["--tune", *tuning.split()] if tuning else []
    begin = time.monotonic()
    try:
        done = subprocess.run([*base, "start", "--run-dir", str(run_dir), "--model-store", str(store),
                               "--archives", archive, "--ips", *_ips(), "--free-ports", "--http-port", str(port),
                               *tune], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"ray engine did not start: {done.stdout[-1500:]}\n{done.stderr[-1500:]}")
        key = json.loads((run_dir / "key_file.json").read_text())["inference"]["key"]
        state = json.loads((run_dir / "cluster.json").read_text())
        url = f"http://127.0.0.1:{port}"
        wait_answering(url, key, body)
        yield Running(url, key, [n["pid"] for n in state["nodes"]], time.monotonic() - begin)
    finally:
        subprocess.run([*base, "stop", "--run-dir", str(run_dir)], cwd=ROOT, capture_output=True, timeout=300,
                       check=False)


@contextlib.contextmanager
def ray_tutorial(work: Path, model_file: Path, body: bytes) -> Iterator[Running]:
    """The tutorial pattern on a LocalRayCluster of its own (the same two nodes as our engine gets)."""
    cluster, port = LocalRayCluster(work / "ray-tutorial"), free_ports().inference
    begin = time.monotonic()
    try:
        state = cluster.start(_ips(), 1, None, port)
        done = subprocess.run([sys.executable, "-m", "toolkit.bench.peers.ray_tutorial", "--address", state.address,
                               "--http-port", str(port), "--model-file", str(model_file), "--replicas", "2"],
                              cwd=ROOT, env=cluster.env(), capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"ray tutorial did not deploy: {done.stdout[-1500:]}\n{done.stderr[-1500:]}")
        url = f"http://127.0.0.1:{port}"
        wait_answering(url, "", body)
        yield Running(url, "", [n.pid for n in state.nodes if n.pid], time.monotonic() - begin)
    finally:
        cluster.stop()


# ----------------------------------------------------------------------------------------------- bodies


def multi_bodies(heldout: Path, into: Path, n: int = MULTI_N) -> list[Payload]:
    """Bodies of `n` held-out images in one request, kind `<n>x json`, `<n>x npy`, `<n>x png_list`."""
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
    out = []
    for kind, (body, ctype) in bodies.items():
        path = into / f"multi{n}.{kind}"
        path.write_bytes(body)
        out.append(Payload(f"{n}x {kind}", path, ctype, len(body)))
    return out


# ------------------------------------------------------------------------------------------------ phase


@dataclass(frozen=True)
class PeerInputs:
    """What every system is measured with: the single-image JSON body (as a file for wrk and as bytes for the
    readiness check) and, for ours, the multi-image bodies."""

    json: Payload
    json_body: bytes
    multi: list[Payload]


def systems(plan: BenchPlan, prepared: Prepared, body: bytes, work: Path) -> dict[str, Starter]:
    """Name -> starter of every system (the TorchScript archive of ours only when the model has one; the
    Ray engine's tuned variants of the plan last)."""
    from toolkit.bench.peers import ts_plain

    store, shipped = prepared.store, prepared.shipped_archive
    plain = ts_plain.build_archive(plan.model_file, work / "plain", store)
    found: dict[str, Starter] = {
        "ours: TorchServe": lambda: torchserve(plan.config, work, store, shipped, "ours", body),
        "ours: TorchServe, TorchScript": lambda: torchserve(plan.config, work, store, prepared.torchscript_archive,
                                                            "ours-ts", body),
        RAY_ENGINE: lambda: ray_engine(work, store, shipped, body),
        "FastAPI single": lambda: fastapi_peer("single", plan.model_file, work, body),
        "FastAPI batcher": lambda: fastapi_peer("batch", plan.model_file, work, body),
        "TorchServe plain": lambda: torchserve(plan.config, work, store, plain, "plain", body, omp1=True),
        "Ray tutorial": lambda: ray_tutorial(work, plan.model_file, body),
    }
    if not prepared.torchscript_archive:
        del found["ours: TorchServe, TorchScript"]
    for tuning in plan.peers.ray_tunings:
        found[tuned_name(tuning)] = lambda tuning=tuning: ray_engine(work, store, shipped, body, tuning)
    return found


def _warm(running: Running, peers: PeerPlan, body: Payload) -> PeerCell:
    """The warm-up at c32: its first seconds measured on their own (returned), the rest unrecorded."""
    first_s = min(peers.first_s, peers.warmup_s)
    first = measure(running, body, 32, first_s)
    if peers.warmup_s - first_s >= 1:
        request = LoadRequest(f"{running.url}/predictions/mnist", "POST", body.path, body.content_type)
        run_load(request, running.key, 32, peers.warmup_s - first_s)
    return first


def _peer_line(run: PeerRun, first_s: float) -> str:
    cells = ", ".join(f"{c.input} c{c.concurrency} {c.load.throughput_rps:.0f} rps p99 {c.load.latency_ms.p99:.1f}"
                      for c in run.cells)
    return (f"peer {run.system}: ready {run.ready_s} s, first {first_s:g} s {run.first.load.throughput_rps:.0f} rps; "
            f"{cells}")


def run_system(name: str, start: Starter, peers: PeerPlan, inputs: PeerInputs, log: Log) -> PeerRun:
    """Start one system, warm it, measure its cells (ours also the multi-image bodies at c8), stop it."""
    with start() as running:
        first = _warm(running, peers, inputs.json)
        cells = [measure(running, inputs.json, c, peers.duration_s) for c in peers.concurrencies]
        for body in inputs.multi if name.startswith("ours") and "[" not in name else []:
            cell = measure(running, body, 8, peers.duration_s)
            cells.append(replace(cell, images_per_s=round(cell.load.throughput_rps * MULTI_N, 1)))
        run = PeerRun(name, round(running.ready_s, 2), first, cells, tree_rss_mib(running.pids))
    log(_peer_line(run, min(peers.first_s, peers.warmup_s)))
    return run


def run_peers(plan: BenchPlan, prepared: Prepared, work: Path, log: Log,
              rows: list[PeerRun | PeerFailure]) -> list[PeerRun | PeerFailure]:
    """Every system of `systems` (or the plan's subset) one after the other; a failure is recorded as a
    PeerFailure and the others still run. Rows are appended to `rows`, which is returned."""
    json_payload = prepared.payloads["json"]
    inputs = PeerInputs(json_payload, json_payload.path.read_bytes(), multi_bodies(plan.heldout, work / "multi"))
    (work / "peers").mkdir(exist_ok=True)
    tuned = {tuned_name(t) for t in plan.peers.ray_tunings}
    for name, start in systems(plan, prepared, inputs.json_body, work / "peers").items():
        if plan.peers.systems and name not in plan.peers.systems and name not in tuned:
            continue
        try:
            rows.append(run_system(name, start, plan.peers, inputs, log))
        except Exception as exc:  # one peer failing must not lose the others
            rows.append(PeerFailure(name, f"{type(exc).__name__}: {exc}"[-3000:]))
            log(f"peer {name}: FAILED {exc}")
    return rows
