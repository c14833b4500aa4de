"""The configuration matrix: model variants registered on one server, each driven at several concurrencies.

Axes: batchSize x maxBatchDelay (ms) x workers x torch threads per worker, and the client concurrency.
- threads: one archive per value, built by `toolkit.archive --config <yaml> --store <bench store>` from the
  model's YAML with `handler.threads` set (TorchServe cannot change it at registration);
- batch size and delay: the same archive registered again under a new name (`mnist_b8_d5_w1_t1`) with
  `batch_size` / `max_batch_delay` (TorchServe honours these at registration);
- workers: `scale` after registration (TorchServe 0.12 ignores `initial_workers` when the archive's
  model-config sets minWorkers/maxWorkers, which ours does).
maxBatchDelay only matters when batchSize > 1, so batchSize 1 is measured with one delay only.
Each variant gets one warm-up run (not recorded), then one wrk run per concurrency, and is unregistered.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from toolkit.archive import build_variant
from toolkit.bench import serverstats
from toolkit.bench.loadgen import Request, run_load
from toolkit.bench.payloads import Payload
from toolkit.client.metrics import scrape
from toolkit.client.rest import ManagementClient
from toolkit.errors import ServerError
from toolkit.polling import poll_until


@dataclass(frozen=True)
class ModelVariant:
    """One registered configuration: batchSize, maxBatchDelay (ms), workers, torch threads per worker."""

    batch_size: int
    delay_ms: int
    workers: int
    threads: int

    def name(self, base: str) -> str:
        """Registration name, e.g. `mnist_b8_d5_w1_t1`."""
        return f"{base}_b{self.batch_size}_d{self.delay_ms}_w{self.workers}_t{self.threads}"

    @property
    def label(self) -> str:
        return f"b{self.batch_size} d{self.delay_ms} w{self.workers} t{self.threads}"


@dataclass
class QuietPolicy:
    """How the bench copes with other processes on a shared machine (CPU figures in % of one core).

    Before a cell it waits up to `wait_s` for others to use at most `max_other_pct`; a cell during which they
    used more is re-run up to `retries` times. All waiting and re-running together stops once `budget_s`
    seconds are spent, so a busy machine cannot stretch a run indefinitely (its cells are then marked noisy).
    """

    max_other_pct: float = 30.0
    retries: int = 1
    wait_s: float = 20.0
    budget_s: float = 300.0
    spent_s: float = 0.0

    @property
    def exhausted(self) -> bool:
        return self.spent_s >= self.budget_s


@dataclass(frozen=True)
class Spec:
    """The matrix to run. Durations in seconds."""

    batch_sizes: tuple[int, ...]
    delays_ms: tuple[int, ...]
    workers: tuple[int, ...]
    threads: tuple[int, ...]
    concurrencies: tuple[int, ...]
    duration_s: float
    warmup_s: float
    quiet: QuietPolicy | None = None  # waiting for / re-running around other users of the cores; None: never


@dataclass
class Target:
    """The server under test: URLs, keys, the frontend pid (for CPU figures) and the archive to register."""

    inference_url: str
    management_url: str
    metrics_url: str
    inference_key: str
    management_key: str
    frontend_pid: int | None


def variants(spec: Spec) -> list[ModelVariant]:
    """Every variant of the matrix; batchSize 1 only with the first delay (delay is moot without batching)."""
    out = []
    for threads in spec.threads:
        for workers in spec.workers:
            for batch in spec.batch_sizes:
                for delay in spec.delays_ms[:1] if batch == 1 else spec.delays_ms:
                    out.append(ModelVariant(batch, delay, workers, threads))
    return out


def thread_archive_name(base: str, threads: int) -> str:
    return f"bench_{base}_t{threads}"


def build_thread_archives(model_yaml: Path, threads: Sequence[int], store: Path) -> dict[int, str]:
    """One archive per threads value in `store` (the model YAML with `handler.threads` replaced).

    Returns threads -> archive file name. Raises ModelConfigError for a variant the schema refuses.
    """
    out = {}
    for value in threads:
        mar = build_variant(model_yaml, thread_archive_name(model_yaml.stem, value), store, handler={"threads": value})
        out[value] = mar.name
    return out


def wait_workers(mgmt: ManagementClient, name: str, count: int, timeout_s: float = 120.0) -> None:
    """Block until `name` has `count` READY workers; TimeoutError naming what it has otherwise."""
    seen: list[tuple[int, int]] = [(0, 0)]

    def exactly_count() -> bool:
        workers = mgmt.describe(name)[0].get("workers", [])
        seen[0] = (sum(w.get("status") == "READY" for w in workers), len(workers))
        return seen[0] == (count, count)

    if not poll_until(exactly_count, timeout_s):
        ready, total = seen[0]
        raise TimeoutError(f"{name}: {ready}/{total} workers READY after {timeout_s:g} s, want {count}")


def wait_drained(mgmt: ManagementClient, name: str, timeout_s: float = 10.0) -> None:
    """Wait until no request of a previous run is pending for `name` (wrk's last in-flight requests)."""
    poll_until(lambda: not mgmt.describe(name)[0].get("jobQueueStatus", {}).get("pendingRequests", 0), timeout_s,
               every_s=0.05)


def unregister(mgmt: ManagementClient, name: str, attempts: int = 5) -> None:
    """Unregister `name`, retrying: TorchServe 0.12 sometimes answers 500 ConcurrentModificationException
    right after a load run. The last error is raised."""
    for attempt in range(1, attempts + 1):
        try:
            mgmt.unregister(name)
            return
        except ServerError:
            if attempt == attempts:
                raise
            time.sleep(1.0)


def register(mgmt: ManagementClient, variant: ModelVariant, archive: str, name: str) -> float:
    """Register `archive` as `name` with the variant's batching, scale it to its workers; seconds it took."""
    start = time.monotonic()
    mgmt.register(archive, model_name=name, batch_size=variant.batch_size, max_batch_delay_ms=variant.delay_ms,
                  initial_workers=variant.workers, synchronous=True)
    desc = mgmt.describe(name)[0]
    if desc["minWorkers"] != variant.workers or desc["maxWorkers"] != variant.workers:
        mgmt.scale(name, variant.workers, variant.workers, synchronous=True)
    wait_workers(mgmt, name, variant.workers)
    desc = mgmt.describe(name)[0]
    if (desc["batchSize"], desc["maxBatchDelay"]) != (variant.batch_size, variant.delay_ms):
        raise RuntimeError(f"{name}: server has batchSize {desc['batchSize']} maxBatchDelay {desc['maxBatchDelay']}")
    return time.monotonic() - start


def run_cell(target: Target, model: str, payload: Payload, concurrency: int, duration_s: float) -> dict:
    """One wrk run against /predictions/<model>, with the server's counters, gauges and CPU around it."""
    request = Request(f"{target.inference_url}/predictions/{model}", "POST", payload.path, payload.content_type)
    before = serverstats.model_counters(scrape(target.metrics_url), model)
    cpu0 = serverstats.cpu_snapshot(target.frontend_pid)
    load = run_load(request, target.inference_key, concurrency, duration_s)
    cpu1 = serverstats.cpu_snapshot(target.frontend_pid)
    samples = scrape(target.metrics_url)
    after = serverstats.model_counters(samples, model)
    server = {**serverstats.counter_means(before, after), **serverstats.cpu_percent(cpu0, cpu1),
              "gauges_last": serverstats.model_gauges(samples, model)}
    server["other_pct"] = serverstats.other_cpu_pct(server, load.client_cpu_pct)
    return {"model": model, "input": payload.kind, "concurrency": concurrency, "load": load.to_dict(),
            "server": server, "loadavg_1m": round(serverstats.load_average()[0], 2)}


def wait_for_quiet(target: Target, quiet: QuietPolicy) -> float:
    """Before a cell: wait (up to quiet.wait_s, within its budget) until other processes use at most
    quiet.max_other_pct of a core; the last figure measured over one idle second."""
    deadline = time.monotonic() + quiet.wait_s
    while True:
        start = time.monotonic()
        busy = serverstats.others_busy_pct(target.frontend_pid)
        if busy <= quiet.max_other_pct or time.monotonic() > deadline or quiet.exhausted:
            return busy
        quiet.spent_s += time.monotonic() - start


def measured_cell(target: Target, model: str, payload: Payload, concurrency: int, spec: Spec) -> dict:
    """run_cell, after waiting for the machine to calm down and re-run while others' CPU during it was above
    the limit (spec.quiet). `noisy` marks a cell measured while others used more than the limit."""
    quiet = spec.quiet
    for attempt in range(1, (quiet.retries if quiet else 0) + 2):
        idle_others = wait_for_quiet(target, quiet) if quiet else None
        start = time.monotonic()
        cell = run_cell(target, model, payload, concurrency, spec.duration_s)
        noisy = quiet is not None and cell["server"]["other_pct"] > quiet.max_other_pct
        cell.update(attempt=attempt, others_idle_pct=idle_others, noisy=noisy)
        if not noisy or quiet.exhausted:
            return cell
        if attempt <= quiet.retries:
            quiet.spent_s += time.monotonic() - start
    return cell


def run_variant(target: Target, variant: ModelVariant, archive: str, base: str, payload: Payload,
                spec: Spec, concurrencies: Sequence[int] | None = None) -> list[dict]:
    """Register one variant, warm it up, run it at every concurrency, unregister it. Rows of cells."""
    name = variant.name(base)
    with ManagementClient(target.management_url, target.management_key) as mgmt:
        register_s = register(mgmt, variant, archive, name)
        try:
            warm = Request(f"{target.inference_url}/predictions/{name}", "POST", payload.path, payload.content_type)
            run_load(warm, target.inference_key, max(spec.concurrencies), spec.warmup_s)
            rows = []
            for concurrency in concurrencies or spec.concurrencies:
                wait_drained(mgmt, name)
                cell = measured_cell(target, name, payload, concurrency, spec)
                rows.append({**asdict(variant), "label": variant.label, "register_s": round(register_s, 2), **cell})
        finally:
            wait_drained(mgmt, name)
            unregister(mgmt, name)
    return rows


def run_matrix(target: Target, archives: dict[int, str], base: str, payload: Payload, spec: Spec,
               rows: list[dict], progress: Callable[[str], None] = print) -> list[dict]:
    """Every variant of `spec` (threads -> archive file in the server's store), one after the other; cells are
    appended to `rows` as they are measured (so a failure keeps what was done), which is returned."""
    todo = variants(spec)
    for index, variant in enumerate(todo, 1):
        cells = run_variant(target, variant, archives[variant.threads], base, payload, spec)
        rows.extend(cells)
        summary = ", ".join(f"c{c['concurrency']}: {c['load']['throughput_rps']:.0f} rps "
                            f"p99 {c['load']['latency_ms']['p99']:.1f} ms" for c in cells)
        progress(f"[{index}/{len(todo)}] {variant.label}: {summary}")
    return rows
