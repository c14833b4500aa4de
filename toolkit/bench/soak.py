"""Soak test: a long open-loop run at about half the measured capacity, watching for leaks and errors.

    python -m toolkit.bench.soak [--minutes 10] [--rate RPS] [--warmup-s S] [--out DIR]      (`make soak`)

Starts its own TorchServe (toolkit.server.LocalServer: the project's config/config.properties, free
loopback ports, run dir under the output folder) with model_store/mnist.mar and tabular.mar. Without
--rate it first measures capacity for --probe-s seconds (16 clients in a closed loop over the request mix)
and then offers half of it: requests are started on a fixed schedule whatever the answers do (open loop),
alternating an MNIST sample PNG and a tabular sample row; every answer is checked against the samples'
expected labels.

Every --sample-s seconds it records, for the frontend JVM and each worker: resident memory (RSS), threads
and open file descriptors. Memory growth is measured between the median RSS of the first 30 s after the
warm-up (default: a fifth of the run, 60 to 120 s; a cold JVM's heap grows for about a minute) and the
median of the last 30 s; medians, because single samples ride the JVM's garbage-collection sawtooth.
Targets: growth <= 5 % per process, zero 5xx, no wrong answer, no request without an answer. The report
(stdout table + report.json in the output folder) gives the numbers; exit status 0 when every target is
met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import psutil

from toolkit.bench.aioclient import Outcome, Request, closed_loop, percentile, post, session
from toolkit.client.management import all_versions
from toolkit.paths import BUILD_MODELS, ROOT
from toolkit.process import free_ports
from toolkit.server.local import LocalServer

GROWTH_TARGET_PCT = 5.0
PROBE_CONCURRENCY = 16
MAX_IN_FLIGHT = 256
MAX_PROBE_REQUESTS = 10_000_000  # the capacity probe is bounded by its duration; this only caps the loop
CLIENT_TIMEOUT_S = 30.0
WINDOW_S = 30.0  # RSS after warm-up and at the end: medians over this many seconds of samples


@dataclass(frozen=True)
class Probe:
    """One request of the mix: model, body, content type, and the check of a 200 answer."""

    model: str
    body: bytes
    content_type: str
    expected: object  # mnist: predicted_label (int); tabular: predictions (list)

    def correct(self, answer: object) -> bool:
        key = "predicted_label" if self.model == "mnist" else "predictions"
        return isinstance(answer, dict) and answer.get(key) == self.expected


def request_mix(build: Path) -> list[Probe]:
    """The MNIST sample PNGs and tabular sample rows with their expected answers, interleaved."""
    mnist_dir, tab_dir = build / "mnist" / "samples", build / "tabular" / "samples"
    mnist = [Probe("mnist", (mnist_dir / f).read_bytes(), "image/png", label)
             for f, label in json.loads((mnist_dir / "expected.json").read_text()).items()]  # fmt: skip
    tabular = [Probe("tabular", (tab_dir / f).read_bytes(), "application/json", labels)
               for f, labels in json.loads((tab_dir / "expected.json").read_text()).items()]  # fmt: skip
    return [probe for pair in zip(mnist, tabular * len(mnist), strict=False) for probe in pair]


# --- process sampling ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcSample:
    """One process at one instant: RSS in bytes, threads, open file descriptors."""

    pid: int
    rss: int
    threads: int
    fds: int


@dataclass
class Sample:
    """The frontend and every worker process, `at` seconds after the soak began."""

    at: float
    frontend: ProcSample
    workers: dict[str, ProcSample]  # worker label (model or pid) -> sample


def proc_sample(proc: psutil.Process) -> ProcSample:
    with proc.oneshot():
        return ProcSample(proc.pid, proc.memory_info().rss, proc.num_threads(), proc.num_fds())


def take_sample(frontend_pid: int, labels: dict[int, str], at: float) -> Sample:
    """Sample the frontend and its child processes; workers are labelled by `labels` (pid -> model)."""
    frontend = psutil.Process(frontend_pid)
    workers = {}
    for child in frontend.children(recursive=True):
        try:
            workers[labels.get(child.pid, f"pid {child.pid}")] = proc_sample(child)
        except psutil.NoSuchProcess:
            continue
    return Sample(round(at, 1), proc_sample(frontend), workers)


def worker_labels(server: LocalServer) -> dict[int, str]:
    """Worker pid -> "model version" from the management API."""
    labels = {}
    with server.management_client(timeout_s=10) as mgmt:
        for desc in all_versions(mgmt):
            for worker in desc.get("workers", []):
                labels[int(worker["pid"])] = f"{desc['modelName']} {desc['modelVersion']}"
    return labels


# --- load ----------------------------------------------------------------------------------------------


@dataclass
class Tally:
    """Outcomes of a load run: HTTP statuses, wrong answers, client-side errors, latencies (s)."""

    statuses: Counter = field(default_factory=Counter)
    wrong: int = 0
    client_errors: Counter = field(default_factory=Counter)
    skipped: int = 0  # not started: MAX_IN_FLIGHT requests were already outstanding
    latencies: list[float] = field(default_factory=list)

    @property
    def answered(self) -> int:
        return sum(self.statuses.values())

    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)


def record(tally: Tally, probe: Probe, outcome: Outcome) -> None:
    """Count one outcome of `probe` in `tally` (a 200 is checked against the probe's expected answer)."""
    if outcome.status is None:
        tally.client_errors[outcome.error] += 1
        return
    tally.statuses[outcome.status] += 1
    tally.latencies.append(outcome.latency_s)
    if outcome.status == 200 and not probe.correct(outcome.json()):
        tally.wrong += 1


def requests_of(mix: list[Probe]) -> list[Request]:
    return [Request(f"/predictions/{p.model}", p.body, p.content_type) for p in mix]


async def measure_capacity(url: str, key: str, mix: list[Probe], seconds: float) -> float:
    """Answers per second with PROBE_CONCURRENCY clients in a closed loop for `seconds`."""
    tally = Tally()
    deadline = time.monotonic() + seconds
    start = time.monotonic()
    await closed_loop(url, key, requests_of(mix), total=MAX_PROBE_REQUESTS, concurrency=PROBE_CONCURRENCY,
                      timeout_s=CLIENT_TIMEOUT_S, on_outcome=lambda o, _: record(tally, mix[o.index % len(mix)], o),
                      should_stop=lambda: time.monotonic() >= deadline)  # fmt: skip
    return tally.statuses[200] / (time.monotonic() - start)


async def open_loop(url: str, key: str, mix: list[Probe], rate: float, seconds: float, tally: Tally) -> None:
    """Start one request every 1/`rate` s for `seconds`, whatever the answers do; wait for the stragglers."""
    pending: set[asyncio.Task] = set()
    reqs = requests_of(mix)
    start = time.monotonic()

    async def one(http: aiohttp.ClientSession, i: int) -> None:
        record(tally, mix[i % len(mix)], await post(http, url, reqs[i % len(reqs)], start, i))

    async with session(key, MAX_IN_FLIGHT, CLIENT_TIMEOUT_S) as http:
        for i in range(int(rate * seconds)):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing of the schedule
            if len(pending) >= MAX_IN_FLIGHT:
                tally.skipped += 1
                continue
            task = asyncio.create_task(one(http, i))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)


async def sampler(server: LocalServer, labels: dict[int, str], every_s: float, stop: asyncio.Event,
                  samples: list[Sample]) -> None:  # fmt: skip
    """Append a Sample every `every_s` seconds until `stop` is set, then one last one."""
    start = time.monotonic()
    pid = server.frontend_pid
    assert pid is not None
    while True:
        samples.append(take_sample(pid, labels, time.monotonic() - start))
        try:
            await asyncio.wait_for(stop.wait(), every_s)
        except TimeoutError:
            continue
        samples.append(take_sample(pid, labels, time.monotonic() - start))
        return


# --- report --------------------------------------------------------------------------------------------


def growth_pct(before: int, after: int) -> float:
    return round(100.0 * (after - before) / before, 2) if before else 0.0


def pick(sample: Sample, name: str) -> ProcSample | None:
    return sample.frontend if name == "frontend" else sample.workers.get(name)


def median_rss(samples: list[Sample], name: str) -> int | None:
    """Median RSS of one process over `samples` (None when it is missing from any): one sample is at the
    mercy of the JVM's garbage-collection sawtooth, a median over ~30 s is not."""
    values = sorted(p.rss for s in samples if (p := pick(s, name)) is not None)
    return values[len(values) // 2] if len(values) == len(samples) and values else None


def process_rows(samples: list[Sample], warmup_s: float) -> list[dict]:
    """Per process: RSS at start, after warm-up and at the end (MiB; the last two are medians over
    WINDOW_S), growth between those two, threads and fds at start and end."""
    first, last = samples[0], samples[-1]
    base = [s for s in samples if warmup_s <= s.at < warmup_s + WINDOW_S] or [last]
    tail = [s for s in samples if s.at >= last.at - WINDOW_S]
    rows = []
    for name in ["frontend", *sorted(last.workers)]:
        a, c = pick(first, name), pick(last, name)
        b_rss, c_rss = median_rss(base, name), median_rss(tail, name)
        if a is None or c is None or b_rss is None or c_rss is None:
            rows.append({"process": name, "note": "not present for the whole run (worker restarted?)"})
            continue
        rows.append({
            "process": name, "pid": c.pid, "pid_changed": a.pid != c.pid,
            "rss_start_mib": round(a.rss / 2**20, 1), "rss_after_warmup_mib": round(b_rss / 2**20, 1),
            "rss_end_mib": round(c_rss / 2**20, 1), "growth_after_warmup_pct": growth_pct(b_rss, c_rss),
            "threads_start": a.threads, "threads_end": c.threads, "fds_start": a.fds, "fds_end": c.fds,
        })  # fmt: skip
    return rows


def percentile_ms(latencies_s: list[float], q: float) -> float | None:
    """The `q`-th latency percentile (toolkit.bench.aioclient.percentile) in ms, rounded to 0.1."""
    value = percentile(latencies_s, q)
    return None if value is None else round(value * 1000, 1)


def verdict(rows: list[dict], tally: Tally) -> list[str]:
    """The targets missed (empty when all are met)."""
    missed = [f"{r['process']}: RSS grew {r['growth_after_warmup_pct']} % after warm-up"
              for r in rows if r.get("growth_after_warmup_pct", 0) > GROWTH_TARGET_PCT]  # fmt: skip
    missed += [f"{r['process']}: {r['note']}" for r in rows if "note" in r or r.get("pid_changed")]
    if tally.server_errors():
        missed.append(f"{tally.server_errors()} answers were 5xx")
    if tally.wrong:
        missed.append(f"{tally.wrong} wrong answers")
    if tally.client_errors or tally.skipped:
        missed.append(f"client errors {dict(tally.client_errors)}, skipped {tally.skipped}")
    return missed


def print_report(report: dict) -> None:
    print(f"\nsoak: {report['minutes']} min at {report['rate_rps']} req/s "
          f"(capacity {report['capacity_rps']} req/s), warm-up {report['warmup_s']} s; "
          f"'warm' and 'end' RSS are medians over {report['median_window_s']:g} s")  # fmt: skip
    print(f"{'process':<22}{'pid':>8}{'RSS start':>11}{'warm':>9}{'end':>9}{'growth%':>9}{'threads':>10}{'fds':>10}")
    for r in report["processes"]:
        if "note" in r:
            print(f"{r['process']:<22}  {r['note']}")
            continue
        print(f"{r['process']:<22}{r['pid']:>8}{r['rss_start_mib']:>11}{r['rss_after_warmup_mib']:>9}"
              f"{r['rss_end_mib']:>9}{r['growth_after_warmup_pct']:>9}"
              f"{r['threads_start']:>5}->{r['threads_end']:<4}{r['fds_start']:>5}->{r['fds_end']:<4}")  # fmt: skip
    t = report["requests"]
    print(f"requests: {t['answered']} answered, statuses {t['statuses']}, 5xx {t['server_errors']}, "
          f"wrong {t['wrong']}, client errors {t['client_errors']}, skipped {t['skipped']}, "
          f"latency p50 {t['p50_ms']} ms p99 {t['p99_ms']} ms")  # fmt: skip
    print("PASS: every target met" if not report["missed"] else "FAIL:\n  " + "\n  ".join(report["missed"]))


def build_report(args: argparse.Namespace, capacity: float | None, rate: float, samples: list[Sample],
                 tally: Tally) -> dict:  # fmt: skip
    rows = process_rows(samples, args.warmup_s)
    return {
        "minutes": args.minutes, "rate_rps": round(rate, 1),
        "capacity_rps": round(capacity, 1) if capacity else None, "warmup_s": args.warmup_s,
        "median_window_s": WINDOW_S,
        "processes": rows,
        "requests": {"answered": tally.answered, "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
                     "server_errors": tally.server_errors(), "wrong": tally.wrong,
                     "client_errors": dict(tally.client_errors), "skipped": tally.skipped,
                     "p50_ms": percentile_ms(tally.latencies, 50), "p99_ms": percentile_ms(tally.latencies, 99)},
        "missed": verdict(rows, tally),
        "samples": [asdict(s) for s in samples],
    }  # fmt: skip


# --- main ----------------------------------------------------------------------------------------------


async def soak(server: LocalServer, args: argparse.Namespace, mix: list[Probe]) -> dict:
    """Capacity probe (unless --rate), then the open-loop run with sampling; the report dict."""
    url, key = server.urls.inference, server.read_keys().inference
    capacity = None if args.rate else await measure_capacity(url, key, mix, args.probe_s)
    rate = args.rate or capacity / 2
    print(f"capacity {capacity and round(capacity, 1)} req/s; soaking {args.minutes} min at {rate:.1f} req/s")
    tally, samples, stop = Tally(), [], asyncio.Event()
    watcher = asyncio.create_task(sampler(server, worker_labels(server), args.sample_s, stop, samples))
    await open_loop(url, key, mix, rate, args.minutes * 60, tally)
    stop.set()
    await watcher
    return build_report(args, capacity, rate, samples, tally)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m toolkit.bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the soak (after the probe)")
    parser.add_argument("--rate", type=float, help="requests per second (default: half the measured capacity)")
    parser.add_argument("--probe-s", type=float, default=15.0, help="seconds of capacity measurement")
    parser.add_argument("--warmup-s", type=float, help="seconds before the memory baseline (default: 1/5, 60..120)")
    parser.add_argument("--sample-s", type=float, default=10.0, help="seconds between process samples")
    parser.add_argument("--out", type=Path, help="output folder (default: build/soak/<UTC time>)")
    args = parser.parse_args(argv)
    if args.warmup_s is None:  # a cold JVM's heap keeps growing for about a minute under load
        args.warmup_s = min(120.0, max(60.0, args.minutes * 60 / 5))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    args.out = args.out or ROOT / "build" / "soak" / stamp
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    mix = request_mix(BUILD_MODELS)
    args.out.mkdir(parents=True, exist_ok=True)
    server = LocalServer(args.out / "run", models=["mnist.mar", "tabular.mar"], ports=free_ports())
    with server.running():
        report = asyncio.run(soak(server, args, mix))
    (args.out / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    print_report(report)
    print(f"report: {args.out / 'report.json'}; server logs: {server.log_dir}")
    return 0 if not report["missed"] else 1


if __name__ == "__main__":
    sys.exit(main())
