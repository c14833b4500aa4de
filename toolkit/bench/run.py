"""One bench run, phase by phase: raw limit, server start (cold start), load-generator ceiling, JVM warm-up,
the shipped configuration and its bursts, the matrix, input paths and config.properties variants on the
recommended variant.

Every phase appends to one result dict (layout: toolkit.bench.report). A started server is always stopped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from toolkit.bench import bursts, serverstats
from toolkit.bench.analysis import best_raw, recommend, targets
from toolkit.bench.loadgen import Request, run_load
from toolkit.bench.matrix import (
    ModelVariant,
    Spec,
    Target,
    build_thread_archives,
    measured_cell,
    run_matrix,
    run_variant,
)
from toolkit.bench.payloads import Payload, first_digit, write_payloads
from toolkit.bench.peers.runner import run_peers
from toolkit.bench.servers import server_variants, start_timed, target_of, variant_config
from toolkit.client.rest import ManagementClient
from toolkit.paths import ROOT
from toolkit.process import free_ports
from toolkit.server.local import LocalServer

Log = Callable[[str], None]


def build_archive(model_yaml: Path, store: Path) -> str:
    """The model's archive exactly as its YAML ships it (preflighted), in `store`; its file name."""
    cmd = [sys.executable, "-m", "toolkit.archive", "--config", str(model_yaml), "--store", str(store)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    return f"{model_yaml.stem}.mar"


def run_raw(model_file: Path, mar: Path, heldout: Path, batch_sizes: tuple[int, ...], threads: tuple[int, ...],
            seconds: float) -> dict:
    """toolkit.bench.raw in its own process (it sets torch's process-wide thread pools)."""
    cmd = [sys.executable, "-m", "toolkit.bench.raw", "--model-file", str(model_file), "--mar", str(mar),
           "--heldout", str(heldout), "--batch-sizes", *map(str, batch_sizes), "--threads", *map(str, threads),
           "--seconds", str(seconds)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def raw_threads(spec: Spec) -> tuple[int, ...]:
    """Thread counts of the raw phase: 1, every core this process may use (the physical limit), the matrix's."""
    return tuple(sorted({1, len(os.sched_getaffinity(0)), *spec.threads}))


def ceiling(target: Target, concurrency: int, duration_s: float) -> tuple[dict, dict]:
    """wrk against GET /ping (no model work): the generator's and the frontend's ceiling, with CPU."""
    cpu0 = serverstats.cpu_snapshot(target.frontend_pid)
    load = run_load(Request(f"{target.inference_url}/ping", "GET"), target.inference_key, concurrency, duration_s)
    cpu1 = serverstats.cpu_snapshot(target.frontend_pid)
    return load.to_dict(), serverstats.cpu_percent(cpu0, cpu1)


def warm_jvm(target: Target, model: str, payload: Payload, seconds: float, first_s: float = 10.0) -> float:
    """Load a fresh frontend at c32 until its JIT has compiled the hot paths (C2 burns a core for ~20-40 s);
    returns the req/s of its first `first_s` seconds (the warm start)."""
    request = Request(f"{target.inference_url}/predictions/{model}", "POST", payload.path, payload.content_type)
    first = run_load(request, target.inference_key, 32, min(first_s, seconds))
    if seconds - first_s >= 1:
        run_load(request, target.inference_key, 32, seconds - first_s)
    return first.throughput_rps


def shipped_cells(target: Target, model: str, payload: Payload, spec: Spec) -> list[dict]:
    """The model as its YAML ships it (registered at start), at every concurrency of the matrix."""
    return [{"label": f"shipped {model}.yaml", **measured_cell(target, model, payload, c, spec)}
            for c in spec.concurrencies]


def config_variant_cells(config: Path, store: Path, work: Path, variant: ModelVariant, archive: str, ctx: dict,
                         log: Log, rows: list[dict]) -> None:
    """The recommended variant under each config.properties variant, each on a fresh server warmed up for
    ctx["jvm_warmup_s"]; the unchanged config once more at the end shows the drift. Cells appended to `rows`."""
    variants_by_name = server_variants(work, config)
    variants_by_name["as_is (again)"] = variants_by_name["as_is"]
    payload, spec = ctx["payloads"]["json"], ctx["spec"]
    for index, (name, overrides) in enumerate(variants_by_name.items()):
        cfg = variant_config(config, overrides, work / f"config-{index}.properties")
        with LocalServer(work / f"run-{index}", cfg, store, [archive], ports=free_ports()).running() as server:
            target = target_of(server)
            first_rps = warm_jvm(target, Path(archive).stem, payload, ctx["jvm_warmup_s"])
            cells = run_variant(target, variant, archive, ctx["base"], payload, spec, ctx["input_concurrencies"])
        rows.extend({**cell, "server_config": name, "overrides": overrides, "label": f"{name}: {variant.label}",
                     "first_10s_rps": first_rps} for cell in cells)
        measured = ", ".join(f"c{c['concurrency']} {c['load']['throughput_rps']:.0f} rps p50 "
                             f"{c['load']['latency_ms']['p50']:.1f} p99 {c['load']['latency_ms']['p99']:.1f}"
                             for c in cells)
        log(f"config {name}: first 10 s {first_rps:.0f} rps, {measured}")


def measure_server(result: dict, target: Target, ctx: dict, log: Log) -> None:
    """Every phase that needs the server: ceiling, warm-up, shipped model, matrix, recommendation, inputs."""
    spec, payloads, base = ctx["spec"], ctx["payloads"], ctx["base"]
    result["loadgen_ceiling"], result["loadgen_ceiling_server"] = ceiling(target, max(spec.concurrencies),
                                                                          spec.duration_s)
    log(f"ceiling /ping: {result['loadgen_ceiling']['throughput_rps']:.0f} req/s, "
        f"wrk CPU {result['loadgen_ceiling']['client_cpu_pct']} %")
    if ctx["base_registered"]:  # the shipped model: load for the frontend's JIT, then measured as it ships
        warm_jvm(target, base, payloads["json"], ctx["jvm_warmup_s"])
        if ctx["shipped"]:
            result["shipped"] = shipped_cells(target, base, payloads["json"], spec)
        if ctx.get("bursts"):  # N at once against the model as shipped (its jobQueueSize)
            bursts.run_bursts(target, base, payloads["json"].path.read_bytes(), ctx["bursts"], log,
                              result.setdefault("bursts", []), ctx.get("log_dir"))
    run_matrix(target, ctx["archives"], base, payloads["json"], spec, result.setdefault("cells", []), log)
    result["recommendation"] = recommend(result["cells"], best_raw(result))
    best = ModelVariant(**result["recommendation"]["variant"])
    log(f"recommended: {best.label}")
    for payload in payloads.values():
        result.setdefault("inputs", []).extend(
            run_variant(target, best, ctx["archives"][best.threads], base, payload, spec, ctx["input_concurrencies"]))


def prepare(ctx: dict, work: Path, log: Log) -> None:
    """Archives (shipped, its `<model>_torchscript.yaml` sibling when there is one, one per threads value) and
    request bodies in `work`."""
    store = work / "store"
    store.mkdir()
    ctx["store"] = store
    ctx["shipped_archive"] = build_archive(ctx["model_yaml"], store)
    alternative = ctx["model_yaml"].with_name(f"{ctx['model_yaml'].stem}_torchscript.yaml")  # other backend
    ctx["torchscript_archive"] = build_archive(alternative, store) if alternative.is_file() else None
    ctx["archives"] = build_thread_archives(ctx["model_yaml"], ctx["spec"].threads, store)
    ctx["payloads"] = write_payloads(first_digit(ctx["heldout"]), work / "bodies")
    log(f"archives in {store}: {ctx['shipped_archive']}, {', '.join(ctx['archives'].values())}")


def run_local(result: dict, ctx: dict, log: Log) -> None:
    """The whole bench on a LocalServer the bench starts (and always stops) from the project config."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = Path(tmp)
        prepare(ctx, work, log)
        if ctx["raw_seconds"] > 0:
            spec = ctx["spec"]
            result["raw"] = run_raw(ctx["model_file"], ctx["store"] / ctx["shipped_archive"], ctx["heldout"],
                                    spec.batch_sizes, raw_threads(spec), ctx["raw_seconds"])
            log("raw forward: " + ", ".join(f"{r['forward']} t{r['threads']} b{r['batch_size']} "
                                            f"{r['images_per_s']:.0f}/s" for r in result["raw"]["forward"]))
        server = LocalServer(work / "run", ctx["config"], ctx["store"], [ctx["shipped_archive"]], ports=free_ports())
        try:
            result["cold_start"] = start_timed(server, ctx["base"], ctx["payloads"]["json"])
            log(f"cold start: first prediction after {result['cold_start']['first_prediction_s']} s")
            measure_server(result, target_of(server), {**ctx, "base_registered": True, "log_dir": server.log_dir},
                           log)
        finally:
            server.stop()
        if ctx.get("peers"):  # every system fresh, same warm-up and load (toolkit.bench.peers.runner)
            run_peers(ctx, work, log, result.setdefault("peers", []))
        if ctx["server_variants"]:
            best = ModelVariant(**result["recommendation"]["variant"])
            config_variant_cells(ctx["config"], ctx["store"], work, best, ctx["archives"][best.threads], ctx, log,
                                 result.setdefault("server_variants", []))
    result["targets"] = targets(result)


def run_remote(result: dict, ctx: dict, log: Log) -> None:
    """The bench against a running server: variant archives go to its model store (removed afterwards).

    No cold start and no config.properties variants (the bench cannot restart a server it did not start).
    """
    target, store = ctx["remote_target"], ctx["remote_store"]
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = Path(tmp)
        ctx["payloads"] = write_payloads(first_digit(ctx["heldout"]), work / "bodies")
        ctx["archives"] = build_thread_archives(ctx["model_yaml"], ctx["spec"].threads, store)
        try:
            if ctx["raw_seconds"] > 0:
                mar = store / ctx["archives"][ctx["spec"].threads[0]]
                result["raw"] = run_raw(ctx["model_file"], mar, ctx["heldout"], ctx["spec"].batch_sizes,
                                        raw_threads(ctx["spec"]), ctx["raw_seconds"])
            measure_server(result, target, {**ctx, "base_registered": model_registered(target, ctx["base"])}, log)
        finally:
            for name in ctx["archives"].values():
                (store / name).unlink(missing_ok=True)
    result["targets"] = targets(result)


def model_registered(target: Target, name: str) -> bool:
    """Whether the running server has a model `name`."""
    with ManagementClient(target.management_url, target.management_key) as mgmt:
        return any(m["modelName"] == name for m in mgmt.models())
