"""Results of one bench run -> the JSON file, a markdown report and a PNG plot (throughput vs p99).

The sections and the JSON layout are `toolkit.bench.results.BenchResult`'s; the figures derived for the report
(peer summary, sizing, autoscaling targets) are toolkit.bench.analysis's.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

from matplotlib.figure import Figure

from toolkit.bench import bursts
from toolkit.bench.analysis import (
    HIGH_C,
    AutoscalingTargets,
    PeerSummary,
    autoscaling_targets,
    best_raw,
    peer_summary,
    sizing,
)
from toolkit.bench.results import BenchResult, BurstRow, Cell, Goal, PeerCell, PeerFailure, PeerRun, RawResult

CELL_HEADER = ("| config | input | conc | req/s | p50 ms | p95 ms | p99 ms | errors | queue ms | after-queue ms "
               "| frontend CPU % | worker CPU % | wrk CPU % | others CPU % |")


def write_json(result: BenchResult, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_json(), indent=1, sort_keys=False) + "\n", encoding="utf-8")
    return path


def _fmt(value: object, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _separator(header: str) -> str:
    return "|" + "---|" * (header.count("|") - 1)


def cell_row(cell: Cell) -> str:
    """One markdown table row of a load cell."""
    load, server, lat = cell.load, cell.server, cell.load.latency_ms
    values = [cell.label + (" (noisy)" if cell.noisy else ""), cell.input, cell.concurrency, load.throughput_rps,
              lat.p50, lat.p95, lat.p99, load.errors, server.mean_queue_ms, server.mean_after_queue_ms,
              server.frontend_pct, server.workers_pct, load.client_cpu_pct, server.other_pct]
    return "| " + " | ".join(_fmt(v) for v in values) + " |"


def cell_table(cells: list[Cell]) -> list[str]:
    return [CELL_HEADER, _separator(CELL_HEADER), *(cell_row(c) for c in cells)]


def raw_table(raw: RawResult | None) -> list[str]:
    """Markdown of the bare forward and the offline handler throughput."""
    lines = ["| forward | threads | batch | images/s | ms/batch |", "|---|---|---|---|---|"]
    if raw is None:
        return lines
    lines += [f"| {r.forward}{' (served)' if r.served else ''} | {r.threads} | {r.batch_size} | "
              f"{r.images_per_s:.0f} | {r.ms_per_batch:.2f} |" for r in raw.forward]
    if raw.handler:
        lines += ["", "| threads | input | batch | requests/s | µs/request |", "|---|---|---|---|---|"]
        lines += [f"| {r.threads} | {r.input} | {r.batch_size} | {r.requests_per_s:.0f} | {r.us_per_request:.0f} |"
                  for r in raw.handler]
    return lines


PEER_HEADER = ("| system | input | conc | req/s | images/s | p50 ms | p99 ms | errors | system CPU % | machine CPU % "
               "| x best peer | x model limit |")


def _peer_intro(result: BenchResult, summary: PeerSummary) -> str:
    return (f"Every system started fresh, warmed {result.meta.peer_warmup_s} s at c32 (its first seconds recorded "
            "as 'first'), same model file, same body, wrk. The model's own limit in this run: "
            f"{_fmt(summary.limit, 0)} images/s (best raw forward). Best peer: {summary.best_peer_name}.")


def _peer_first_row(run: PeerRun) -> str:
    load = run.first.load
    return (f"| {run.system} | json, first s after ready (ready in {run.ready_s} s) | 32 | "
            f"{load.throughput_rps:.0f} | | {load.latency_ms.p50:.2f} | {load.latency_ms.p99:.1f} | {load.errors} | "
            f"{run.first.system_cpu_pct} | {run.first.machine_cpu_pct} | | |")


def _peer_cell_row(system: str, cell: PeerCell, best_rps: float | None, limit: float | None) -> str:
    """A cell of one system, with its ratio to the best peer's c32 JSON req/s and to the model's limit."""
    load = cell.load
    images = cell.images_per_s or load.throughput_rps
    compared = cell.input == "json" and cell.concurrency == HIGH_C
    vs_peer = f"{load.throughput_rps / best_rps:.2f}" if best_rps and compared else ""
    vs_limit = f"{images / limit:.2f}" if limit else ""
    return (f"| {system} | {cell.input} | {cell.concurrency} | {load.throughput_rps:.0f} | {images:.0f} | "
            f"{load.latency_ms.p50:.2f} | {load.latency_ms.p99:.1f} | {load.errors} | {cell.system_cpu_pct} | "
            f"{cell.machine_cpu_pct} | {vs_peer} | {vs_limit} |")


def _peer_rows(row: PeerRun | PeerFailure, best_rps: float | None, limit: float | None) -> list[str]:
    if isinstance(row, PeerFailure):
        return [f"| {row.system} | failed: {row.error[:150]} |" + " |" * 10]
    return [_peer_first_row(row), *(_peer_cell_row(row.system, c, best_rps, limit) for c in row.cells)]


def peers_table(result: BenchResult) -> list[str]:
    """Every system of the peers phase: ready time, first seconds after ready, each cell, CPU, memory, and
    its ratio to the best peer and to the model's own limit (best forward of this run)."""
    summary = peer_summary(result)
    best_c32 = summary.best_peer.cell(HIGH_C) if summary.best_peer else None
    best_rps = best_c32.load.throughput_rps if best_c32 else None
    lines = [_peer_intro(result, summary), "", PEER_HEADER, _separator(PEER_HEADER)]
    for row in result.peers:
        lines += _peer_rows(row, best_rps, summary.limit)
    memory = ", ".join(f"{r.system} {r.rss_mib:.0f} MiB" for r in result.peers if isinstance(r, PeerRun))
    return [*lines, "", f"Memory (RSS of each system's process tree after its cells): {memory}"]


def _autoscaling_line(auto: AutoscalingTargets) -> str:
    return (f"Autoscaling targets from it: at capacity {auto.capacity_rps:.0f} req/s with a mean latency of "
            f"{auto.mean_latency_ms:.1f} ms a replica holds {auto.in_flight_at_capacity} requests in flight "
            f"(Little's law); at 70 %: concurrency target {auto.pod_target_concurrency} per pod (KServe "
            f"`autoscaling.knative.dev/target`, Ray `target_ongoing_requests` per TorchServe-sized replica), "
            f"{auto.pod_target_rps} req/s per pod, CPU utilisation {auto.cpu_utilization_target_pct} % (HPA).")


def sizing_lines(result: BenchResult) -> list[str]:
    """The sizing table and the autoscaling targets derived from this run's capacity per replica."""
    rows = sizing(result)
    if not rows:
        return []
    lines = [f"One replica = ours (TorchServe, shipped config) on this run's {result.meta.affinity} "
             "cores, run at 70 % of its measured closed-loop capacity; memory = its measured RSS per replica. "
             "Paper figures: they assume linear scale-out behind a load balancer with no shared bottleneck.", "",
             "| client | target | per replica (measured) | p99 at capacity | replicas | cores | memory GiB |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r.client} | {r.rate:,} {r.unit} | {r.per_replica:.0f} {r.unit} | "
              f"{r.p99_ms:.1f} ms{'' if r.p99_ok else ' (over 100 ms!)'} | {r.replicas} | {r.cores} | "
              f"{r.memory_gib} |" for r in rows]
    auto = autoscaling_targets(result)
    return [*lines, "", _autoscaling_line(auto)] if auto else lines


def targets_table(targets: list[Goal]) -> list[str]:
    lines = ["| goal | measured | target | met |", "|---|---|---|---|"]
    lines += [f"| {t.goal} | {t.measured} | {t.target} | {'yes' if t.met else 'NO'} |" for t in targets]
    return lines


def ceiling_lines(result: BenchResult) -> list[str]:
    ping, server = result.loadgen_ceiling, result.loadgen_ceiling_server
    if not ping:
        return []
    return [f"wrk against GET /ping, {ping.concurrency} connections: {ping.throughput_rps:.0f} req/s, "
            f"p99 {ping.latency_ms.p99:.1f} ms, wrk CPU {ping.client_cpu_pct:.0f} % of one core "
            f"(server CPU: frontend {server.frontend_pct if server else '-'} %)."]


def noise_line(result: BenchResult) -> str:
    """How many measured cells other processes disturbed (their CPU use during the cell above the limit)."""
    cells = result.all_cells()
    noisy = sum(c.noisy for c in cells)
    quiet = result.meta.matrix.quiet
    if not quiet:
        return f"Others' CPU is recorded per cell (column 'others CPU %'); no quiet limit was set ({len(cells)} cells)."
    return (f"Cells measured while other processes used more than {quiet.max_other_pct:g} % of a core: {noisy} of "
            f"{len(cells)} (marked noisy, after up to {quiet.retries} re-run(s); {quiet.spent_s:.0f} s of "
            f"{quiet.budget_s:g} s spent waiting for quiet).")


def _header(result: BenchResult) -> list[str]:
    meta = result.meta
    cold = _fmt(result.cold_start.first_prediction_s if result.cold_start else None, 2)
    return [f"# Bench {meta.timestamp}", "", f"Command: `{meta.command}`  ",
            f"Machine: {meta.cpus} cores; load average before {meta.load_before}, after {meta.load_after}  ",
            f"Cold start (torchserve --start -> first 200 prediction): {cold} s  ", noise_line(result),
            "", "## Load generator ceiling", "", *ceiling_lines(result),
            "", "## Raw model (no server)", "", *raw_table(result.raw)]


def _bursts_section(rows: list[BurstRow]) -> list[str]:
    return ["Client times from each task's start (connection set-up included, the Python client shares the "
            "cores); '503 server' is the frontend's own time per refusal (access log).", "", *bursts.table(rows)]


def _server_variant_cells(result: BenchResult) -> list[Cell]:
    return [cell for run in result.server_variants for cell in run.cells]


def _sections(result: BenchResult) -> list[tuple[str, list[str]]]:
    """(title, lines) of every section after the header, in order; a section without lines is left out."""
    recommendation = json.dumps(asdict(result.recommendation), indent=1) if result.recommendation else ""
    return [
        ("Targets", targets_table(result.targets) if result.targets else []),
        ("Peers (same run, same model, same load)", peers_table(result) if result.peers else []),
        ("Sizing (from the measured capacity per replica)", sizing_lines(result) if result.peers else []),
        ("Recommendation", ["```", recommendation, "```"] if recommendation else []),
        ("Input paths (recommended config)", cell_table(result.inputs) if result.inputs else []),
        ("config.properties variants (recommended model config)",
         cell_table(_server_variant_cells(result)) if result.server_variants else []),
        ("The model as config/models YAML ships it", cell_table(result.shipped) if result.shipped else []),
        ("Bursts: N requests at once, the model as shipped (queue = its jobQueueSize)",
         _bursts_section(result.bursts) if result.bursts else []),
        ("Matrix (JSON body)", cell_table(result.cells)),
    ]


def markdown(result: BenchResult, plot_name: str | None) -> str:
    """The whole report as markdown."""
    out = _header(result)
    for title, lines in _sections(result):
        if lines:
            out += ["", f"## {title}", "", *lines]
    if plot_name:
        out += ["", f"![throughput vs p99]({plot_name})"]
    return "\n".join(out) + "\n"


def _series(cells: list[Cell]) -> dict[tuple[int, int], dict[str, list[Cell]]]:
    """(workers, threads) -> label -> cells ordered by concurrency (matrix cells only)."""
    groups: dict[tuple[int, int], dict[str, list[Cell]]] = defaultdict(lambda: defaultdict(list))
    for cell in sorted(cells, key=lambda c: c.concurrency):
        if cell.variant is not None:
            groups[(cell.variant.workers, cell.variant.threads)][cell.label].append(cell)
    return groups


def _panel(ax, title: str, series: dict[str, list[Cell]], limit: float | None) -> None:
    """One panel: a line per configuration through its concurrencies (x: req/s, y: p99 ms, log)."""
    for label, cells in series.items():
        xs = [c.load.throughput_rps for c in cells]
        ys = [max(c.load.latency_ms.p99, 0.1) for c in cells]
        ax.plot(xs, ys, marker="o", label=label)
        for x, y, c in zip(xs, ys, cells, strict=True):
            ax.annotate(str(c.concurrency), (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points")
    if limit:
        ax.axvline(limit, color="k", linestyle="--", linewidth=0.8, label=f"raw forward {limit:.0f} img/s")
        ax.axvline(0.6 * limit, color="grey", linestyle=":", linewidth=0.8, label="60 % of raw")
    ax.axhline(100, color="r", linestyle=":", linewidth=0.8, label="p99 100 ms")
    ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("throughput (requests/s)")
    ax.set_ylabel("p99 (ms); point labels = concurrency")
    ax.legend(fontsize=6)


def _burst_panel(ax, rows: list[BurstRow]) -> None:
    """Bursts: answered (200) and refused (503) per burst size N, and seconds to the last answer / 200 p99."""
    ns = [r.n for r in rows]
    ax.plot(ns, [r.answered for r in rows], marker="o", label="answered 200")
    ax.plot(ns, [r.refused for r in rows], marker="s", label="refused 503")
    ax.set_xscale("log")
    ax.set_xlabel("burst: N requests at once")
    ax.set_ylabel("requests")
    times = ax.twinx()
    times.plot(ns, [r.drain_s for r in rows], color="k", linestyle="--", marker=".", label="last answer (s)")
    times.plot(ns, [(r.ok_ms.p99 or 0) / 1e3 for r in rows], color="grey", linestyle=":", marker=".",
               label="200 p99 (s)")
    times.set_ylabel("seconds")
    ax.set_title(f"bursts, model as shipped (jobQueueSize {rows[0].queue_capacity})", fontsize=10)
    ax.legend(fontsize=6, loc="upper left")
    times.legend(fontsize=6, loc="center left")


def plot(result: BenchResult, path: Path) -> Path:
    """Throughput (x) vs p99 (y, log) per configuration, one panel per (workers, threads); points = concurrency.
    With bursts, one more panel: answered/refused and drain time per burst size."""
    groups = sorted(_series(result.cells).items())
    panels = len(groups) + bool(result.bursts)
    cols = min(2, max(1, panels))
    rows = max(1, -(-panels // cols))
    fig = Figure(figsize=(6.5 * cols, 4.8 * rows))  # no pyplot: no global backend or figure state
    axes = fig.subplots(rows, cols, squeeze=False)
    limit = best_raw(result.raw)
    for index, ((workers, threads), series) in enumerate(groups):
        ax = axes[index // cols][index % cols]
        _panel(ax, f"{workers} worker(s) x {threads} torch thread(s)",
               {label.split(" w")[0]: cells for label, cells in series.items()}, limit)
    if result.bursts:
        _burst_panel(axes[len(groups) // cols][len(groups) % cols], result.bursts)
    for index in range(panels, rows * cols):
        axes[index // cols][index % cols].set_visible(False)
    fig.suptitle(f"mnist, JSON body, closed loop (wrk) — {result.meta.timestamp}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def write_all(result: BenchResult, out_dir: Path, stem: str) -> dict[str, Path]:
    """Write `<stem>.json`, `<stem>.md` and `<stem>.png` under `out_dir`; their paths."""
    png = plot(result, out_dir / f"{stem}.png")
    md = out_dir / f"{stem}.md"
    md.write_text(markdown(result, png.name), encoding="utf-8")
    return {"json": write_json(result, out_dir / f"{stem}.json"), "markdown": md, "plot": png}
