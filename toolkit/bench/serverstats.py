"""What the server itself says during a load run: its Prometheus counters and the CPU its processes used.

TorchServe 0.12 with `metrics_mode=prometheus` serves on the metrics listener (`/metrics`, no token):
- counters per model and version: `ts_inference_requests_total`, `ts_inference_latency_microseconds`
  (frontend: request received -> response written, summed over requests) and `ts_queue_latency_microseconds`
  (request received -> handed to a worker's batch, summed);
- gauges holding the last value only: `QueueTime` / `WorkerThreadTime` (ms, frontend) and the backend's
  `PredictionTime` (ms, one batch through `handle()`) and `HandlerTime`.
Deltas of the counters between two scrapes give per-request means over exactly one load run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psutil

from toolkit.client.metrics import Sample

COUNTERS = ("ts_inference_requests_total", "ts_inference_latency_microseconds", "ts_queue_latency_microseconds")
GAUGES = ("QueueTime", "WorkerThreadTime", "PredictionTime", "HandlerTime")


@dataclass(frozen=True)
class Counters:
    """The frontend counters of one model at one scrape (all versions summed): requests, and the summed
    request latency and queue latency in µs."""

    requests: float
    latency_us: float
    queue_us: float


def model_counters(samples: list[Sample], model: str) -> Counters:
    """The three frontend counters (COUNTERS, in that order) of `model`, all versions summed."""
    totals = dict.fromkeys(COUNTERS, 0.0)
    for name, labels, value in samples:
        if name in totals and labels.get("model_name") == model:
            totals[name] += value
    return Counters(*totals.values())


def model_gauges(samples: list[Sample], model: str) -> dict[str, float]:
    """Last values of the gauges: backend ones for `model`, frontend ones (no model label) as they are."""
    out: dict[str, float] = {}
    for name, labels, value in samples:
        if name in GAUGES and labels.get("ModelName", model) == model:
            out[name] = value
    return out


@dataclass(frozen=True)
class CounterMeans:
    """Per-request means (ms) over one interval between two counter snapshots; None when no request was counted."""

    requests: int
    mean_server_ms: float | None = None  # request received -> response written
    mean_queue_ms: float | None = None  # request received -> handed to a worker's batch
    mean_after_queue_ms: float | None = None  # the rest: the batch through the worker, the answer written


def counter_means(before: Counters, after: Counters) -> CounterMeans:
    """Per-request means over the interval between two `model_counters` snapshots (ms)."""
    count = after.requests - before.requests
    if count <= 0:
        return CounterMeans(0)
    total = after.latency_us - before.latency_us
    queue = after.queue_us - before.queue_us
    return CounterMeans(int(count), round(total / count / 1e3, 3), round(queue / count / 1e3, 3),
                        round((total - queue) / count / 1e3, 3))


@dataclass(frozen=True)
class CpuPercent:
    """Average CPU use over an interval in % of one core (200 = both cores of a 2-core machine)."""

    frontend_pct: float
    workers_pct: float
    machine_pct: float


@dataclass(frozen=True)
class ServerStats:
    """What the server itself showed during one load run: counter means (ms), CPU of its processes and of
    the machine, the CPU of everything else (`other_pct`), and the last values of its gauges."""

    requests: int
    mean_server_ms: float | None
    mean_queue_ms: float | None
    mean_after_queue_ms: float | None
    frontend_pct: float
    workers_pct: float
    machine_pct: float
    other_pct: float
    gauges_last: dict[str, float]  # gauge name (GAUGES) -> last value

    @classmethod
    def of(cls, means: CounterMeans, cpu: CpuPercent, gauges: dict[str, float], client_cpu_pct: float) -> ServerStats:
        """Combine one run's counter means, CPU and gauges; `client_cpu_pct` is the load generator's CPU."""
        return cls(means.requests, means.mean_server_ms, means.mean_queue_ms, means.mean_after_queue_ms,
                   cpu.frontend_pct, cpu.workers_pct, cpu.machine_pct, other_cpu_pct(cpu, client_cpu_pct), gauges)


@dataclass
class CpuSnapshot:
    """CPU seconds (user+sys) of the frontend, of its worker processes and of the whole machine at one instant."""

    at: float
    frontend_s: float
    workers_s: float
    machine_s: float


def _machine_busy_s() -> float:
    """CPU seconds all cores spent outside idle/iowait since boot."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def _cpu_s(proc: psutil.Process) -> float:
    try:
        times = proc.cpu_times()
    except psutil.Error:
        return 0.0
    return times.user + times.system


def cpu_snapshot(frontend_pid: int | None) -> CpuSnapshot:
    """CPU used so far by the frontend JVM and by all its descendants (the Python workers)."""
    if frontend_pid is None:
        return CpuSnapshot(time.monotonic(), 0.0, 0.0, _machine_busy_s())
    try:
        frontend = psutil.Process(frontend_pid)
        children = frontend.children(recursive=True)
    except psutil.Error:
        return CpuSnapshot(time.monotonic(), 0.0, 0.0, _machine_busy_s())
    return CpuSnapshot(time.monotonic(), _cpu_s(frontend), sum(_cpu_s(c) for c in children), _machine_busy_s())


def cpu_percent(before: CpuSnapshot, after: CpuSnapshot) -> CpuPercent:
    """Average CPU use between two snapshots, in % of one core (200 = both cores of this machine).

    Worker processes that exited or started in between make the worker figure approximate; the bench
    keeps the set of workers fixed during a run.
    """
    wall = after.at - before.at
    if wall <= 0:
        return CpuPercent(0.0, 0.0, 0.0)
    return CpuPercent(
        frontend_pct=round(100 * (after.frontend_s - before.frontend_s) / wall, 1),
        workers_pct=round(100 * (after.workers_s - before.workers_s) / wall, 1),
        machine_pct=round(100 * (after.machine_s - before.machine_s) / wall, 1),
    )


def other_cpu_pct(cpu: CpuPercent, client_cpu_pct: float) -> float:
    """CPU % of the machine used by anything but this server and the load generator during a run
    (other users of the cores: the figure that says how trustworthy the run is)."""
    ours = cpu.frontend_pct + cpu.workers_pct + client_cpu_pct
    return round(max(0.0, cpu.machine_pct - ours), 1)


def others_busy_pct(frontend_pid: int | None, seconds: float = 1.0) -> float:
    """CPU % (of one core) used over `seconds` by everything except this server and this process: how busy
    other users keep the machine right now (call it while the server is idle)."""
    me = psutil.Process()
    before, mine0 = cpu_snapshot(frontend_pid), _cpu_s(me)
    time.sleep(seconds)
    after, mine1 = cpu_snapshot(frontend_pid), _cpu_s(me)
    ours = cpu_percent(before, after)
    wall = after.at - before.at
    other = ours.machine_pct - ours.frontend_pct - ours.workers_pct - 100 * (mine1 - mine0) / wall
    return round(max(0.0, other), 1)


def load_average() -> tuple[float, float, float]:
    """The machine's 1/5/15-minute load averages (other users of the 2 cores show up here)."""
    return psutil.getloadavg()
