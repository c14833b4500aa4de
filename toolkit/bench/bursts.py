"""Bursts: N requests at once against one model, the test of its queue budget (jobQueueSize).

    python -m toolkit.bench.bursts [--sizes 100 1000 2000 5000 10000] [--model mnist] [--out bench/results]

A burst is what a user's asyncio load test does: one task per request, all gathered at once, each on its own
connection (`toolkit.bench.aioclient.burst`), every body the JSON digit `{"image": 28x28}`. TorchServe queues
a request while the model's job queue has room (jobQueueSize of the archive's model-config) and refuses it
at once with 503 beyond that. Per burst: answers (200 / 503 / other / none), p50/p99 latency of the 200s and of
the 503s (ms, from the task's start: connection set-up included), time until the last answer (the drain), the
queue capacity the server reported before, frontend and worker memory before and after (RSS, MiB), and whether
the server answered /ping and a prediction afterwards. `python -m toolkit.bench` runs the same phase on its
own server (`--bursts`); standalone, this module starts a LocalServer from config/config.properties with the
model's shipped archive from model_store/ (`make archive`), and writes `bursts-<timestamp>.{json,md}`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import psutil

from toolkit.bench.aioclient import Outcome, PostRequest, burst, percentile
from toolkit.bench.matrix import wait_drained
from toolkit.bench.payloads import encode, first_digit
from toolkit.bench.plan import TargetServer
from toolkit.bench.results import BurstRow, Latencies, StatusTimes
from toolkit.bench.servers import target_of
from toolkit.client.rest import InferenceClient, ManagementClient
from toolkit.errors import ToolkitError
from toolkit.paths import BENCH_RESULTS, BUILD_MODELS, CONFIG_PROPERTIES, MODEL_STORE
from toolkit.process import free_ports
from toolkit.server.local import LocalServer

BURST_SIZES = (100, 1000, 2000, 5000, 10000)
QUICK_SIZES = (100, 1000, 2000)
# Per request: far beyond any queue budget, so a timeout means a hung request (a 10,000 burst on a loaded 2-core
# machine answered its last request after 36 s, most of it the Python client's own connection set-up).
BURST_TIMEOUT_S = 120.0
MIB = 1 << 20


def digit_body(model: str = "mnist") -> bytes:
    """The JSON body of the bursts: the first held-out digit of build/models/<model>/ as `{"image": 28x28}`."""
    return encode("json", first_digit(BUILD_MODELS / model.removesuffix("_onnx") / "heldout.npz"))


def latencies_ms(values: Sequence[float]) -> Latencies:
    """p50 / p99 / max of latencies in seconds, as ms (None each when there are none)."""
    if not values:
        return Latencies(None, None, None)
    return Latencies(round(1e3 * percentile(values, 50), 1), round(1e3 * percentile(values, 99), 1),
                     round(1e3 * max(values), 1))


def status_counts(outcomes: Sequence[Outcome]) -> tuple[dict[str, int], dict[str, int]]:
    """(HTTP status -> count for statuses other than 200 and 503, client exception name -> count)."""
    other = Counter(str(o.status) for o in outcomes if o.status not in (200, 503, None))
    none = Counter(o.error for o in outcomes if o.status is None)
    return dict(other), dict(none)


def last_done_s(outcomes: Sequence[Outcome]) -> float:
    """Seconds from the burst's start to the last of `outcomes` (0 when there is none)."""
    return round(max((o.done_at for o in outcomes), default=0.0), 3)


def memory_mib(frontend_pid: int | None) -> dict[str, float]:
    """RSS in MiB of the frontend JVM and of each of its worker processes (by pid), psutil."""
    if frontend_pid is None:
        return {}
    try:
        front = psutil.Process(frontend_pid)
        out = {"frontend": round(front.memory_info().rss / MIB, 1)}
        for child in front.children(recursive=True):  # not the metric collector TorchServe runs each minute
            if any("model_service_worker" in part for part in child.cmdline()):
                out[f"worker {child.pid}"] = round(child.memory_info().rss / MIB, 1)
    except psutil.Error:
        return {}
    return out


def queue_capacity(mgmt: ManagementClient, model: str) -> int | None:
    """The model's job queue size as the server reports it (remaining capacity + pending), None if unreported."""
    status = mgmt.describe(model)[0].get("jobQueueStatus") or {}
    if "remainingCapacity" not in status:
        return None
    return int(status["remainingCapacity"]) + int(status.get("pendingRequests", 0))


# TorchServe's access log line: `... - /127.0.0.1:50040 "POST /predictions/mnist HTTP/1.1" 503 1`, the last field
# being the frontend's own time for the request in ms (received -> answer written).
_ACCESS = re.compile(r'"POST (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3}) (?P<ms>\d+)\s*$')


def log_size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0


def server_times(access_log: Path, offset: int, path: str) -> dict[str, StatusTimes]:
    """The frontend's own per-request times (ms) for POST `path` logged after byte `offset` of its access log,
    per status; {} when there is no access log (a log4j2 config that turns it off)."""
    if not access_log.is_file():
        return {}
    times: dict[str, list[float]] = {}
    with access_log.open("rb") as log:
        log.seek(offset)
        for raw in log:
            match = _ACCESS.search(raw.decode("utf-8", "replace"))
            if match and match["path"] == path:
                times.setdefault(match["status"], []).append(float(match["ms"]) / 1e3)
    return {status: status_times(values) for status, values in sorted(times.items())}


def status_times(values: list[float]) -> StatusTimes:
    """Count, p50, p99 and max (ms) of the frontend's times (s) for one status."""
    ms = latencies_ms(values)
    return StatusTimes(len(values), ms.p50, ms.p99, ms.max)


def healthy_after(target: TargetServer, model: str, body: bytes) -> bool:
    """Whether the server answers /ping Healthy and one prediction 200 after a burst."""
    try:
        with InferenceClient(target.inference_url, target.inference_key, timeout_s=30.0) as client:
            return client.ping() == "Healthy" and client.predict(model, body, "application/json")[0] == 200
    except ToolkitError:
        return False


def run_burst(target: TargetServer, model: str, body: bytes, n: int, timeout_s: float = BURST_TIMEOUT_S,
              log_dir: Path | None = None) -> BurstRow:
    """One burst of `n` at once against /predictions/<model>, after the queue is empty; its row. With the
    server's `log_dir`, the row also has the frontend's own times per status from its access log."""
    path = f"/predictions/{model}"
    with ManagementClient(target.management_url, target.management_key) as mgmt:
        wait_drained(mgmt, model, timeout_s)
        capacity = queue_capacity(mgmt, model)
    access_log = (log_dir or Path("/nonexistent")) / "access_log.log"
    offset = log_size(access_log)
    before = memory_mib(target.frontend_pid)
    outcomes = asyncio.run(burst(target.inference_url, target.inference_key, PostRequest(path, body), n, timeout_s))
    after = memory_mib(target.frontend_pid)
    ok = [o for o in outcomes if o.status == 200]
    refused = [o for o in outcomes if o.status == 503]
    other, none = status_counts(outcomes)
    return BurstRow(
        model=model, queue_capacity=capacity, n=len(outcomes), answered=len(ok), refused=len(refused),
        other_statuses=other, no_answer=none, ok_ms=latencies_ms([o.latency_s for o in ok]),
        refused_ms=latencies_ms([o.latency_s for o in refused]), drain_s=last_done_s(outcomes),
        last_ok_s=last_done_s(ok), refused_message=refused[0].detail if refused else "",
        server_ms=server_times(access_log, offset, path), memory_mib_before=before, memory_mib_after=after,
        healthy_after=healthy_after(target, model, body))


def burst_line(row: BurstRow) -> str:
    """One progress line of a burst row."""
    ok, ref = row.ok_ms, row.refused_ms
    server_ms = {status: f"p50 {t.p50} p99 {t.p99} max {t.max} (n {t.count})" for status, t in row.server_ms.items()}
    return (f"burst {row.n}: {row.answered} x 200, {row.refused} x 503, other {row.other_statuses}, "
            f"no answer {row.no_answer}; 200 p50/p99 {ok.p50}/{ok.p99} ms, 503 p50/p99 {ref.p50}/{ref.p99} ms; "
            f"last answer {row.drain_s} s; queue {row.queue_capacity}; server-side ms {server_ms}; "
            f"healthy after: {row.healthy_after}; RSS MiB {row.memory_mib_before} -> {row.memory_mib_after}")


def run_bursts(target: TargetServer, model: str, body: bytes, sizes: Sequence[int], log: Callable[[str], None],
               rows: list[BurstRow], log_dir: Path | None = None) -> list[BurstRow]:
    """A burst of each size in turn (rows appended to `rows` as they come, which is returned)."""
    for n in sizes:
        row = run_burst(target, model, body, n, log_dir=log_dir)
        rows.append(row)
        log(burst_line(row))
    return rows


HEADER = ("| burst N | queue | 200 | 503 | other | no answer | 200 p50 ms | 200 p99 ms | 503 p50 ms | 503 p99 ms "
          "| 503 server p99 ms | last answer s | healthy after | frontend MiB before -> after |")


def table_row(r: BurstRow) -> str:
    """One markdown table row of a burst."""
    mem = f"{r.memory_mib_before.get('frontend', '-')} -> {r.memory_mib_after.get('frontend', '-')}"
    server_503 = r.server_ms["503"].p99 if "503" in r.server_ms else None
    values = [r.n, r.queue_capacity, r.answered, r.refused, sum(r.other_statuses.values()), sum(r.no_answer.values()),
              r.ok_ms.p50, r.ok_ms.p99, r.refused_ms.p50, r.refused_ms.p99, server_503, r.drain_s,
              "yes" if r.healthy_after else "NO", mem]
    return "| " + " | ".join("-" if v is None else str(v) for v in values) + " |"


def table(rows: Sequence[BurstRow]) -> list[str]:
    """Markdown table of burst rows."""
    return [HEADER, "|" + "---|" * (HEADER.count("|") - 1), *(table_row(r) for r in rows)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m toolkit.bench.bursts", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mnist", help="model_store/<model>.mar, as shipped")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(BURST_SIZES))
    parser.add_argument("--config", type=Path, default=CONFIG_PROPERTIES)
    parser.add_argument("--out", type=Path, default=BENCH_RESULTS)
    args = parser.parse_args(argv)
    body = digit_body(args.model)
    rows: list[BurstRow] = []
    stamp = time.strftime("%Y%m%d-%H%M%S")
    with tempfile.TemporaryDirectory(prefix="bursts-") as run_dir:
        server = LocalServer(run_dir, args.config, MODEL_STORE, [f"{args.model}.mar"], ports=free_ports())
        with server.running():
            run_bursts(target_of(server), args.model, body, args.sizes, lambda line: print(line, flush=True),
                       rows, server.log_dir)
    args.out.mkdir(parents=True, exist_ok=True)
    rows_json = json.dumps([asdict(r) for r in rows], indent=1)
    (args.out / f"bursts-{stamp}.json").write_text(rows_json + "\n", encoding="utf-8")
    (args.out / f"bursts-{stamp}.md").write_text("\n".join(table(rows)) + "\n", encoding="utf-8")
    print("\n".join(table(rows)))
    print(f"wrote {args.out / f'bursts-{stamp}.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
