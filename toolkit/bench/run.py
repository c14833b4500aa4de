"""One bench run, phase by phase: raw limit, server start (cold start), load-generator ceiling, JVM warm-up,
the shipped configuration and its bursts, the matrix, input paths, the peers and config.properties variants on
the recommended variant.

Every phase fills its own section of one `BenchResult` (toolkit.bench.results) from the `BenchPlan` and what
`prepare` built. A started server is always stopped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from toolkit.archive import build
from toolkit.bench import bursts, serverstats
from toolkit.bench.analysis import best_raw, recommend, targets
from toolkit.bench.loadgen import LoadRequest, run_load
from toolkit.bench.matrix import build_thread_archives, cells_line, measured_cell, run_matrix, run_variant
from toolkit.bench.payloads import Payload, first_digit, write_payloads
from toolkit.bench.peers.runner import run_peers
from toolkit.bench.plan import BenchPlan, MatrixSpec, ModelVariant, Prepared, TargetServer
from toolkit.bench.results import BenchResult, Cell, RawResult, ServerVariantRun
from toolkit.bench.servers import server_variants, start_timed, target_of, variant_config
from toolkit.client.rest import ManagementClient
from toolkit.paths import ROOT
from toolkit.process import free_ports
from toolkit.server.local import LocalServer

Log = Callable[[str], None]


@dataclass(frozen=True)
class MeasuredServer:
    """The server the server phases drive: whether it has the model as shipped (registered under the model's
    name), and its log folder (for the frontend's access log; None when the bench cannot see it)."""

    target: TargetServer
    model_registered: bool
    log_dir: Path | None = None


def build_archive(model_yaml: Path, store: Path) -> str:
    """The model's archive exactly as its YAML ships it (validated and preflighted), in `store`; its file name."""
    return build(model_yaml, store).name


def run_raw(plan: BenchPlan, mar: Path) -> RawResult:
    """toolkit.bench.raw in its own process (it sets torch's process-wide thread pools) on `mar`."""
    cmd = [sys.executable, "-m", "toolkit.bench.raw", "--model-file", str(plan.model_file), "--mar", str(mar),
           "--heldout", str(plan.heldout), "--batch-sizes", *map(str, plan.matrix.batch_sizes),
           "--threads", *map(str, raw_threads(plan.matrix)), "--seconds", str(plan.raw_seconds)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    return RawResult.from_json(json.loads(done.stdout.strip().splitlines()[-1]))


def raw_threads(spec: MatrixSpec) -> tuple[int, ...]:
    """Thread counts of the raw phase: 1, every core this process may use (the physical limit), the matrix's."""
    return tuple(sorted({1, len(os.sched_getaffinity(0)), *spec.threads}))


def raw_line(raw: RawResult) -> str:
    return "raw forward: " + ", ".join(f"{r.forward} t{r.threads} b{r.batch_size} {r.images_per_s:.0f}/s"
                                       for r in raw.forward)


def ceiling(result: BenchResult, target: TargetServer, concurrency: int, duration_s: float) -> None:
    """wrk against GET /ping (no model work): the generator's and the frontend's ceiling, with CPU."""
    cpu0 = serverstats.cpu_snapshot(target.frontend_pid)
    load = run_load(LoadRequest(f"{target.inference_url}/ping", "GET"), target.inference_key, concurrency, duration_s)
    result.loadgen_ceiling_server = serverstats.cpu_percent(cpu0, serverstats.cpu_snapshot(target.frontend_pid))
    result.loadgen_ceiling = load


def warm_jvm(target: TargetServer, model: str, payload: Payload, seconds: float, first_s: float = 10.0) -> float:
    """Load a fresh frontend at c32 until its JIT has compiled the hot paths (C2 burns a core for ~20-40 s);
    returns the req/s of its first `first_s` seconds (the warm start)."""
    request = LoadRequest(f"{target.inference_url}/predictions/{model}", "POST", payload.path, payload.content_type)
    first = run_load(request, target.inference_key, 32, min(first_s, seconds))
    if seconds - first_s >= 1:
        run_load(request, target.inference_key, 32, seconds - first_s)
    return first.throughput_rps


def shipped_cells(target: TargetServer, model: str, payload: Payload, spec: MatrixSpec) -> list[Cell]:
    """The model as its YAML ships it (registered at start), at every concurrency of the matrix."""
    return [replace(measured_cell(target, model, payload, c, spec), label=f"shipped {model}.yaml")
            for c in spec.concurrencies]


def recommended(result: BenchResult) -> ModelVariant:
    """The recommended variant of this run; RuntimeError when the matrix phase did not recommend one."""
    if result.recommendation is None:
        raise RuntimeError("no recommended variant: the matrix phase did not complete")
    return result.recommendation.variant


def config_variant_run(plan: BenchPlan, prepared: Prepared, work: Path, index: int, name: str,
                       overrides: dict[str, str], variant: ModelVariant) -> ServerVariantRun:
    """The recommended variant on a fresh server started from the config.properties variant `overrides`,
    warmed up for plan.jvm_warmup_s first."""
    cfg = variant_config(plan.config, overrides, work / f"config-{index}.properties")
    archive = prepared.thread_archives[variant.threads]
    payload = prepared.payloads["json"]
    with LocalServer(work / f"run-{index}", cfg, prepared.store, [archive], ports=free_ports()).running() as server:
        target = target_of(server)
        first_rps = warm_jvm(target, Path(archive).stem, payload, plan.jvm_warmup_s)
        cells = run_variant(target, variant, archive, plan.model, payload, plan.matrix, plan.input_concurrencies)
    return ServerVariantRun(name, overrides, first_rps, [replace(c, label=f"{name}: {c.label}") for c in cells])


def config_variant_runs(plan: BenchPlan, prepared: Prepared, work: Path, variant: ModelVariant, log: Log,
                        runs: list[ServerVariantRun]) -> None:
    """The recommended variant under each config.properties variant, each on a fresh server; the unchanged
    config once more at the end shows the drift. Runs are appended to `runs` as they are measured."""
    variants_by_name = server_variants(work, plan.config)
    variants_by_name["as_is (again)"] = variants_by_name["as_is"]
    for index, (name, overrides) in enumerate(variants_by_name.items()):
        run = config_variant_run(plan, prepared, work, index, name, overrides, variant)
        runs.append(run)
        log(f"config {name}: first 10 s {run.first_10s_rps:.0f} rps, {cells_line(run.cells)}")


def measure_shipped(result: BenchResult, plan: BenchPlan, prepared: Prepared, server: MeasuredServer,
                    log: Log) -> None:
    """Load for the frontend's JIT, then the model measured as it ships, then its bursts (its jobQueueSize)."""
    target, payload = server.target, prepared.payloads["json"]
    warm_jvm(target, plan.model, payload, plan.jvm_warmup_s)
    if plan.shipped:
        result.shipped = shipped_cells(target, plan.model, payload, plan.matrix)
    if plan.bursts:
        bursts.run_bursts(target, plan.model, payload.path.read_bytes(), plan.bursts, log, result.bursts,
                          server.log_dir)


def measure_server(result: BenchResult, plan: BenchPlan, prepared: Prepared, server: MeasuredServer,
                   log: Log) -> None:
    """Every phase that needs the server: ceiling, warm-up, shipped model, matrix, recommendation, inputs."""
    target, spec = server.target, plan.matrix
    ceiling(result, target, max(spec.concurrencies), spec.duration_s)
    ping = result.loadgen_ceiling
    log(f"ceiling /ping: {ping.throughput_rps:.0f} req/s, wrk CPU {ping.client_cpu_pct} %")
    if server.model_registered:
        measure_shipped(result, plan, prepared, server, log)
    run_matrix(target, prepared.thread_archives, plan.model, prepared.payloads["json"], spec, result.cells, log)
    result.recommendation = recommend(result.cells, best_raw(result.raw))
    best = result.recommendation.variant
    log(f"recommended: {best.label}")
    for payload in prepared.payloads.values():
        result.inputs.extend(run_variant(target, best, prepared.thread_archives[best.threads], plan.model, payload,
                                         spec, plan.input_concurrencies))


def prepare(plan: BenchPlan, work: Path, log: Log) -> Prepared:
    """Archives (shipped, its `<model>_torchscript.yaml` sibling when there is one, one per threads value) and
    request bodies in `work`, all built in this process."""
    store = work / "store"
    store.mkdir()
    shipped = build_archive(plan.model_yaml, store)
    alternative = plan.model_yaml.with_name(f"{plan.model_yaml.stem}_torchscript.yaml")  # the other backend
    prepared = Prepared(store=store, shipped_archive=shipped,
                        torchscript_archive=build_archive(alternative, store) if alternative.is_file() else None,
                        thread_archives=build_thread_archives(plan.model_yaml, plan.matrix.threads, store),
                        payloads=write_payloads(first_digit(plan.heldout), work / "bodies"))
    log(f"archives in {store}: {shipped}, {', '.join(prepared.thread_archives.values())}")
    return prepared


def run_server_phases(result: BenchResult, plan: BenchPlan, prepared: Prepared, work: Path, log: Log) -> None:
    """Start the bench's own server (timed: the cold start), run the server phases on it, stop it."""
    server = LocalServer(work / "run", plan.config, prepared.store, [prepared.shipped_archive], ports=free_ports())
    try:
        result.cold_start = start_timed(server, plan.model, prepared.payloads["json"])
        log(f"cold start: first prediction after {result.cold_start.first_prediction_s} s")
        measure_server(result, plan, prepared, MeasuredServer(target_of(server), True, server.log_dir), log)
    finally:
        server.stop()


def run_local(plan: BenchPlan, result: BenchResult, log: Log) -> None:
    """The whole bench on a LocalServer the bench starts (and always stops) from the project config."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = Path(tmp)
        prepared = prepare(plan, work, log)
        if plan.raw_seconds > 0:
            result.raw = run_raw(plan, prepared.store / prepared.shipped_archive)
            log(raw_line(result.raw))
        run_server_phases(result, plan, prepared, work, log)
        if plan.peers.enabled:  # every system fresh, same warm-up and load (toolkit.bench.peers.runner)
            run_peers(plan, prepared, work, log, result.peers)
        if plan.server_variants:
            config_variant_runs(plan, prepared, work, recommended(result), log, result.server_variants)
    result.targets = targets(result)


def run_remote(plan: BenchPlan, result: BenchResult, log: Log) -> None:
    """The bench against a running server (plan.remote): variant archives go to its model store (removed
    afterwards). No cold start, peers or config.properties variants (it cannot restart a server it did not start).
    """
    if plan.remote is None:
        raise ValueError("run_remote needs a plan with a remote server (--url)")
    target, store = plan.remote.target, plan.remote.store
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        prepared = Prepared(store=store, shipped_archive=None, torchscript_archive=None,
                            thread_archives=build_thread_archives(plan.model_yaml, plan.matrix.threads, store),
                            payloads=write_payloads(first_digit(plan.heldout), Path(tmp) / "bodies"))
        try:
            if plan.raw_seconds > 0:
                result.raw = run_raw(plan, store / prepared.thread_archives[plan.matrix.threads[0]])
            server = MeasuredServer(target, model_registered(target, plan.model))
            measure_server(result, plan, prepared, server, log)
        finally:
            for name in prepared.thread_archives.values():
                (store / name).unlink(missing_ok=True)
    result.targets = targets(result)


def model_registered(target: TargetServer, name: str) -> bool:
    """Whether the running server has a model `name`."""
    with ManagementClient(target.management_url, target.management_key) as mgmt:
        return any(m["modelName"] == name for m in mgmt.models())
