"""Results of one bench run -> the JSON file, a markdown report and a PNG plot (throughput vs p99).

The JSON layout (`bench/results/<timestamp>.json`):
    meta            when, how (argv, spec), machine (cores, load averages before/after), versions, server config
    raw             {"forward": [...], "handler": [...]} from toolkit.bench.raw
    loadgen_ceiling wrk against GET /ping (the trivial endpoint) with wrk's own CPU use
    cold_start      seconds from `torchserve --start` to the first 200 prediction (when the bench started it)
    cells           one row per (variant, concurrency), JSON input: wrk figures + server counters/CPU
    inputs          the recommended variant per input kind (json, png, npy) and concurrency
    server_variants the recommended variant under alternative config.properties settings
    recommendation  the chosen variant and why; targets: measured vs target per goal of the issue
    peers           each system of toolkit.bench.peers.runner started fresh: ready time, first seconds, cells,
                    CPU and memory (ours: TorchServe and the Ray engine, FastAPI, plain TorchServe, Ray tutorial)
    bursts          the shipped model under N requests at once (toolkit.bench.bursts): answered, refused,
                    p50/p99, time to the last answer, frontend times, memory
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from matplotlib.figure import Figure

from toolkit.bench import bursts
from toolkit.bench.analysis import autoscaling_targets, best_forward, best_raw, peer_summary, sizing

CELL_HEADER = ("| config | input | conc | req/s | p50 ms | p95 ms | p99 ms | errors | queue ms | after-queue ms "
               "| frontend CPU % | worker CPU % | wrk CPU % | others CPU % |")


def write_json(result: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    return path


def _fmt(value: object, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def cell_row(cell: dict) -> str:
    """One markdown table row of a load cell."""
    load, server = cell["load"], cell["server"]
    lat = load["latency_ms"]
    label = cell.get("label", cell.get("model")) + (" (noisy)" if cell.get("noisy") else "")
    values = [label, cell["input"], cell["concurrency"], load["throughput_rps"],
              lat["p50"], lat["p95"], lat["p99"], load["errors"], server.get("mean_queue_ms"),
              server.get("mean_after_queue_ms"), server.get("frontend_pct"), server.get("workers_pct"),
              load["client_cpu_pct"], server.get("other_pct")]
    return "| " + " | ".join(_fmt(v) for v in values) + " |"


def cell_table(cells: list[dict]) -> list[str]:
    return [CELL_HEADER, _separator(CELL_HEADER), *(cell_row(c) for c in cells)]


def _separator(header: str) -> str:
    return "|" + "---|" * (header.count("|") - 1)


def raw_table(raw: dict) -> list[str]:
    """Markdown of the bare forward and the offline handler throughput."""
    lines = ["| forward | threads | batch | images/s | ms/batch |", "|---|---|---|---|---|"]
    lines += [f"| {r.get('forward', 'as_served')}{' (served)' if r.get('served') else ''} | {r['threads']} "
              f"| {r['batch_size']} | {r['images_per_s']:.0f} | {r['ms_per_batch']:.2f} |"
              for r in raw.get("forward", [])]
    if raw.get("handler"):
        lines += ["", "| threads | input | batch | requests/s | µs/request |", "|---|---|---|---|---|"]
        lines += [f"| {r['threads']} | {r['input']} | {r['batch_size']} | {r['requests_per_s']:.0f} "
                  f"| {r['us_per_request']:.0f} |" for r in raw["handler"]]
    return lines


def peers_table(result: dict) -> list[str]:
    """Every system of the peers phase: ready time, first seconds after ready, each cell, CPU, memory, and
    its ratio to the best peer and to the model's own limit (best forward of this run)."""
    summary = peer_summary(result)
    limit = best_forward(result)
    best = summary["best_peer_row"]
    best_c32 = next((c for c in (best or {}).get("cells", []) if c["concurrency"] == 32 and c["input"] == "json"),
                    None)
    lines = [f"Every system started fresh, warmed {result['meta'].get('peer_warmup_s', '-')} s at c32 (its first "
             "seconds recorded as 'first'), same model file, same body, wrk. The model's own limit in this run: "
             f"{_fmt(limit, 0)} images/s (best raw forward). Best peer: {summary['best_peer'] or '-'}.", "",
             "| system | input | conc | req/s | images/s | p50 ms | p99 ms | errors | system CPU % | machine CPU % "
             "| x best peer | x model limit |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in result.get("peers", []):
        if "error" in row:
            lines.append(f"| {row['system']} | failed: {row['error'][:150]} |" + " |" * 10)
            continue
        first = row["first"]
        lines.append(f"| {row['system']} | json, first s after ready (ready in {row['ready_s']} s) | 32 | "
                     f"{first['load']['throughput_rps']:.0f} | | {first['load']['latency_ms']['p50']:.2f} | "
                     f"{first['load']['latency_ms']['p99']:.1f} | {first['load']['errors']} | "
                     f"{first['system_cpu_pct']} | {first['machine_cpu_pct']} | | |")
        for cell in row["cells"]:
            load = cell["load"]
            images = cell.get("images_per_s", load["throughput_rps"])
            vs_peer = (f"{load['throughput_rps'] / best_c32['load']['throughput_rps']:.2f}"
                       if best_c32 and cell["input"] == "json" and cell["concurrency"] == 32 else "")
            vs_limit = f"{images / limit:.2f}" if limit else ""
            lines.append(f"| {row['system']} | {cell['input']} | {cell['concurrency']} | {load['throughput_rps']:.0f} "
                         f"| {images:.0f} | {load['latency_ms']['p50']:.2f} | {load['latency_ms']['p99']:.1f} | "
                         f"{load['errors']} | {cell['system_cpu_pct']} | {cell['machine_cpu_pct']} | {vs_peer} | "
                         f"{vs_limit} |")
    lines += ["", "Memory (RSS of each system's process tree after its cells): "
              + ", ".join(f"{r['system']} {r['rss_mib']:.0f} MiB" for r in result.get("peers", []) if "rss_mib" in r)]
    return lines


def sizing_lines(result: dict) -> list[str]:
    """The sizing table and the autoscaling targets derived from this run's capacity per replica."""
    rows = sizing(result)
    if not rows:
        return []
    lines = [f"One replica = ours (TorchServe, shipped config) on this run's {result['meta'].get('affinity')} "
             "cores, run at 70 % of its measured closed-loop capacity; memory = its measured RSS per replica. "
             "Paper figures: they assume linear scale-out behind a load balancer with no shared bottleneck.", "",
             "| client | target | per replica (measured) | p99 at capacity | replicas | cores | memory GiB |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['client']} | {r['rate']:,} {r['unit']} | {r['per_replica']:.0f} {r['unit']} | "
              f"{r['p99_ms']:.1f} ms{'' if r['p99_ok'] else ' (over 100 ms!)'} | {r['replicas']} | {r['cores']} | "
              f"{r['memory_gib']} |" for r in rows]
    auto = autoscaling_targets(result)
    if auto:
        lines += ["", f"Autoscaling targets from it: at capacity {auto['capacity_rps']:.0f} req/s with a mean latency "
                  f"of {auto['mean_latency_ms']:.1f} ms a replica holds {auto['in_flight_at_capacity']} requests in "
                  f"flight (Little's law); at 70 %: concurrency target {auto['pod_target_concurrency']} per pod "
                  f"(KServe `autoscaling.knative.dev/target`, Ray `target_ongoing_requests` per TorchServe-sized "
                  f"replica), {auto['pod_target_rps']} req/s per pod, CPU utilisation "
                  f"{auto['cpu_utilization_target_pct']} % (HPA)."]
    return lines


def targets_table(targets: list[dict]) -> list[str]:
    lines = ["| goal | measured | target | met |", "|---|---|---|---|"]
    lines += [f"| {t['goal']} | {t['measured']} | {t['target']} | {'yes' if t['met'] else 'NO'} |" for t in targets]
    return lines


def ceiling_lines(result: dict) -> list[str]:
    ping = result.get("loadgen_ceiling")
    if not ping:
        return []
    return [f"wrk against GET /ping, {ping['concurrency']} connections: {ping['throughput_rps']:.0f} req/s, "
            f"p99 {ping['latency_ms']['p99']:.1f} ms, wrk CPU {ping['client_cpu_pct']:.0f} % of one core "
            f"(server CPU: frontend {result.get('loadgen_ceiling_server', {}).get('frontend_pct', '-')} %)."]


def noise_line(result: dict) -> str:
    """How many measured cells other processes disturbed (their CPU use during the cell above the limit)."""
    cells = [c for key in ("shipped", "cells", "inputs", "server_variants") for c in result.get(key, [])]
    noisy = sum(bool(c.get("noisy")) for c in cells)
    quiet = result["meta"].get("spec", {}).get("quiet")
    if not quiet:
        return f"Others' CPU is recorded per cell (column 'others CPU %'); no quiet limit was set ({len(cells)} cells)."
    return (f"Cells measured while other processes used more than {quiet['max_other_pct']:g} % of a core: {noisy} of "
            f"{len(cells)} (marked noisy, after up to {quiet['retries']} re-run(s); {quiet['spent_s']:.0f} s of "
            f"{quiet['budget_s']:g} s spent waiting for quiet).")


def markdown(result: dict, plot_name: str | None) -> str:
    """The whole report as markdown."""
    meta = result["meta"]
    cold = _fmt(result.get("cold_start", {}).get("first_prediction_s"), 2)
    out = [f"# Bench {meta['timestamp']}", "", f"Command: `{meta['command']}`  ",
           f"Machine: {meta['cpus']} cores; load average before {meta['load_before']}, "
           f"after {meta.get('load_after')}  ",
           f"Cold start (torchserve --start -> first 200 prediction): {cold} s  ",
           noise_line(result),
           "", "## Load generator ceiling", "", *ceiling_lines(result),
           "", "## Raw model (no server)", "", *raw_table(result.get("raw", {}))]
    if result.get("targets"):
        out += ["", "## Targets", "", *targets_table(result["targets"])]
    if result.get("peers"):
        out += ["", "## Peers (same run, same model, same load)", "", *peers_table(result)]
        out += ["", "## Sizing (from the measured capacity per replica)", "", *sizing_lines(result)]
    if result.get("recommendation"):
        out += ["", "## Recommendation", "", "```", json.dumps(result["recommendation"], indent=1), "```"]
    if result.get("inputs"):
        out += ["", "## Input paths (recommended config)", "", *cell_table(result["inputs"])]
    if result.get("server_variants"):
        out += ["", "## config.properties variants (recommended model config)", "",
                *cell_table(result["server_variants"])]
    if result.get("shipped"):
        out += ["", "## The model as config/models YAML ships it", "", *cell_table(result["shipped"])]
    if result.get("bursts"):
        out += ["", "## Bursts: N requests at once, the model as shipped (queue = its jobQueueSize)", "",
                "Client times from each task's start (connection set-up included, the Python client shares the "
                "cores); '503 server' is the frontend's own time per refusal (access log).", "",
                *bursts.table(result["bursts"])]
    out += ["", "## Matrix (JSON body)", "", *cell_table(result.get("cells", []))]
    if plot_name:
        out += ["", f"![throughput vs p99]({plot_name})"]
    return "\n".join(out) + "\n"


def _series(cells: list[dict]) -> dict[tuple, dict[str, list[dict]]]:
    """(workers, threads) -> label -> cells ordered by concurrency."""
    groups: dict[tuple, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for cell in sorted(cells, key=lambda c: c["concurrency"]):
        groups[(cell["workers"], cell["threads"])][cell["label"]].append(cell)
    return groups


def _panel(ax, title: str, series: dict[str, list[dict]], limit: float | None) -> None:
    """One panel: a line per configuration through its concurrencies (x: req/s, y: p99 ms, log)."""
    for label, cells in series.items():
        xs = [c["load"]["throughput_rps"] for c in cells]
        ys = [max(c["load"]["latency_ms"]["p99"], 0.1) for c in cells]
        ax.plot(xs, ys, marker="o", label=label)
        for x, y, c in zip(xs, ys, cells, strict=True):
            ax.annotate(str(c["concurrency"]), (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points")
    if limit:
        ax.axvline(limit, color="k", linestyle="--", linewidth=0.8, label=f"raw forward {limit:.0f} img/s")
        ax.axvline(0.6 * limit, color="grey", linestyle=":", linewidth=0.8, label="60 % of raw")
    ax.axhline(100, color="r", linestyle=":", linewidth=0.8, label="p99 100 ms")
    ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("throughput (requests/s)")
    ax.set_ylabel("p99 (ms); point labels = concurrency")
    ax.legend(fontsize=6)


def _burst_panel(ax, rows: list[dict]) -> None:
    """Bursts: answered (200) and refused (503) per burst size N, and seconds to the last answer / 200 p99."""
    ns = [r["n"] for r in rows]
    ax.plot(ns, [r["answered"] for r in rows], marker="o", label="answered 200")
    ax.plot(ns, [r["refused"] for r in rows], marker="s", label="refused 503")
    ax.set_xscale("log")
    ax.set_xlabel("burst: N requests at once")
    ax.set_ylabel("requests")
    times = ax.twinx()
    times.plot(ns, [r["drain_s"] for r in rows], color="k", linestyle="--", marker=".", label="last answer (s)")
    times.plot(ns, [(r["ok_ms"]["p99"] or 0) / 1e3 for r in rows], color="grey", linestyle=":", marker=".",
               label="200 p99 (s)")
    times.set_ylabel("seconds")
    queue = rows[0].get("queue_capacity")
    ax.set_title(f"bursts, model as shipped (jobQueueSize {queue})", fontsize=10)
    ax.legend(fontsize=6, loc="upper left")
    times.legend(fontsize=6, loc="center left")


def plot(result: dict, path: Path) -> Path:
    """Throughput (x) vs p99 (y, log) per configuration, one panel per (workers, threads); points = concurrency.
    With bursts, one more panel: answered/refused and drain time per burst size."""
    groups = sorted(_series(result.get("cells", [])).items())
    panels = len(groups) + bool(result.get("bursts"))
    cols = min(2, max(1, panels))
    rows = max(1, -(-panels // cols))
    fig = Figure(figsize=(6.5 * cols, 4.8 * rows))  # no pyplot: no global backend or figure state
    axes = fig.subplots(rows, cols, squeeze=False)
    limit = best_raw(result)
    for index, ((workers, threads), series) in enumerate(groups):
        ax = axes[index // cols][index % cols]
        _panel(ax, f"{workers} worker(s) x {threads} torch thread(s)",
               {label.split(" w")[0]: cells for label, cells in series.items()}, limit)
    if result.get("bursts"):
        _burst_panel(axes[len(groups) // cols][len(groups) % cols], result["bursts"])
    for index in range(panels, rows * cols):
        axes[index // cols][index % cols].set_visible(False)
    fig.suptitle(f"mnist, JSON body, closed loop (wrk) — {result['meta']['timestamp']}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def write_all(result: dict, out_dir: Path, stem: str) -> dict[str, Path]:
    """Write `<stem>.json`, `<stem>.md` and `<stem>.png` under `out_dir`; their paths."""
    png = plot(result, out_dir / f"{stem}.png")
    md = out_dir / f"{stem}.md"
    md.write_text(markdown(result, png.name), encoding="utf-8")
    return {"json": write_json(result, out_dir / f"{stem}.json"), "markdown": md, "plot": png}
