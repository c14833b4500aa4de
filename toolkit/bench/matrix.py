"""The configuration matrix: model variants registered on one server, each driven at several concurrencies.

Axes: batchSize x maxBatchDelay (ms) x workers x torch threads per worker, and the client concurrency.
- threads: one archive per value, built in-process by `toolkit.archive.build_variant` from the model's YAML with
  `handler.threads` set, into the bench's store (TorchServe cannot change it at registration);
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
from dataclasses import replace
from pathlib import Path

from toolkit.archive import build_variant
from toolkit.bench import serverstats
from toolkit.bench.loadgen import LoadRequest, run_load
from toolkit.bench.payloads import Payload
from toolkit.bench.plan import MatrixSpec, ModelVariant, QuietPolicy, TargetServer
from toolkit.bench.results import Cell
from toolkit.client.metrics import scrape
from toolkit.client.rest import ManagementClient
from toolkit.errors import ServerError
from toolkit.polling import poll_until


def variants(spec: MatrixSpec) -> list[ModelVariant]:
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
    right after a load run, having unregistered the model all the same, so a 404 on a retry means done. The
    last error is raised."""
    for attempt in range(1, attempts + 1):
        try:
            mgmt.unregister(name)
            return
        except ServerError as error:
            if attempt > 1 and error.status == 404:
                return
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


def run_cell(target: TargetServer, model: str, payload: Payload, concurrency: int, duration_s: float) -> Cell:
    """One wrk run against /predictions/<model>, with the server's counters, gauges and CPU around it; the
    cell is labelled with the model's name."""
    request = LoadRequest(f"{target.inference_url}/predictions/{model}", "POST", payload.path, payload.content_type)
    before = serverstats.model_counters(scrape(target.metrics_url), model)
    cpu0 = serverstats.cpu_snapshot(target.frontend_pid)
    load = run_load(request, target.inference_key, concurrency, duration_s)
    cpu1 = serverstats.cpu_snapshot(target.frontend_pid)
    samples = scrape(target.metrics_url)
    server = serverstats.ServerStats.of(
        serverstats.counter_means(before, serverstats.model_counters(samples, model)),
        serverstats.cpu_percent(cpu0, cpu1), serverstats.model_gauges(samples, model), load.client_cpu_pct)
    return Cell(model, model, payload.kind, concurrency, load, server, round(serverstats.load_average()[0], 2))


def wait_for_quiet(target: TargetServer, quiet: QuietPolicy) -> float:
    """Before a cell: wait (up to quiet.wait_s, within its budget) until other processes use at most
    quiet.max_other_pct of a core; the last figure measured over one idle second."""
    deadline = time.monotonic() + quiet.wait_s
    while True:
        start = time.monotonic()
        busy = serverstats.others_busy_pct(target.frontend_pid)
        if busy <= quiet.max_other_pct or time.monotonic() > deadline or quiet.exhausted:
            return busy
        quiet.spent_s += time.monotonic() - start


def measured_cell(target: TargetServer, model: str, payload: Payload, concurrency: int, spec: MatrixSpec) -> Cell:
    """run_cell, after waiting for the machine to calm down and re-run while others' CPU during it was above
    the limit (spec.quiet). `noisy` marks a cell measured while others used more than the limit."""
    quiet = spec.quiet
    for attempt in range(1, (quiet.retries if quiet else 0) + 2):
        idle_others = wait_for_quiet(target, quiet) if quiet else None
        start = time.monotonic()
        cell = run_cell(target, model, payload, concurrency, spec.duration_s)
        noisy = quiet is not None and cell.server.other_pct > quiet.max_other_pct
        cell = replace(cell, attempt=attempt, others_idle_pct=idle_others, noisy=noisy)
        if not noisy or quiet.exhausted:
            return cell
        if attempt <= quiet.retries:
            quiet.spent_s += time.monotonic() - start
    return cell


def run_variant(target: TargetServer, variant: ModelVariant, archive: str, base: str, payload: Payload,
                spec: MatrixSpec, concurrencies: Sequence[int] | None = None) -> list[Cell]:
    """Register one variant, warm it up, run it at every concurrency, unregister it; its cells."""
    name = variant.name(base)
    with ManagementClient(target.management_url, target.management_key) as mgmt:
        register_s = round(register(mgmt, variant, archive, name), 2)
        try:
            warm = LoadRequest(f"{target.inference_url}/predictions/{name}", "POST", payload.path,
                               payload.content_type)
            run_load(warm, target.inference_key, max(spec.concurrencies), spec.warmup_s)
            cells = []
            for concurrency in concurrencies or spec.concurrencies:
                wait_drained(mgmt, name)
                cell = measured_cell(target, name, payload, concurrency, spec)
                cells.append(replace(cell, label=variant.label, variant=variant, register_s=register_s))
        finally:
            wait_drained(mgmt, name)
            unregister(mgmt, name)
    return cells


def cells_line(cells: Sequence[Cell]) -> str:
    """Progress text of a variant's cells: req/s, p50 and p99 per concurrency."""
    return ", ".join(f"c{c.concurrency} {c.load.throughput_rps:.0f} rps p50 {c.load.latency_ms.p50:.1f} "
                     f"p99 {c.load.latency_ms.p99:.1f} ms" for c in cells)


def run_matrix(target: TargetServer, archives: dict[int, str], base: str, payload: Payload, spec: MatrixSpec,
               cells: list[Cell], progress: Callable[[str], None] = print) -> list[Cell]:
    """Every variant of `spec` (threads -> archive file in the server's store), one after the other; cells are
    appended to `cells` as they are measured (so a failure keeps what was done), which is returned."""
    todo = variants(spec)
    for index, variant in enumerate(todo, 1):
        measured = run_variant(target, variant, archives[variant.threads], base, payload, spec)
        cells.extend(measured)
        progress(f"[{index}/{len(todo)}] {variant.label}: {cells_line(measured)}")
    return cells
