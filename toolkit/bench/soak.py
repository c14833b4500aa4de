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

from handlers.answers import prediction
from toolkit.bench.aioclient import Outcome, PostRequest, closed_loop, percentile, post, session
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
    expected: object  # the answer's prediction (handlers.answers.prediction): mnist a class index, tabular a list

    def correct(self, answer: object) -> bool:
        return prediction(answer) == self.expected


def request_mix(build: Path) -> list[Probe]:
    """The MNIST sample PNGs and tabular sample rows with their expected answers, interleaved."""
    mnist_dir, tab_dir = build / "mnist" / "samples", build / "tabular" / "samples"
    mnist = [Probe("mnist", (mnist_dir / f).read_bytes(), "image/png", label)
             for f, label in json.loads((mnist_dir / "expected.json").read_text()).items()]
    tabular = [Probe("tabular", (tab_dir / f).read_bytes(), "application/json", labels)
               for f, labels in json.loads((tab_dir / "expected.json").read_text()).items()]
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


def requests_of(mix: list[Probe]) -> list[PostRequest]:
    return [PostRequest(f"/predictions/{p.model}", p.body, p.content_type) for p in mix]


async def measure_capacity(url: str, key: str, mix: list[Probe], seconds: float) -> float:
    """Answers per second with PROBE_CONCURRENCY clients in a closed loop for `seconds`."""
    tally = Tally()
    deadline = time.monotonic() + seconds
    start = time.monotonic()
    await closed_loop(url, key, requests_of(mix), total=MAX_PROBE_REQUESTS, concurrency=PROBE_CONCURRENCY,
                      timeout_s=CLIENT_TIMEOUT_S, on_outcome=lambda o, _: record(tally, mix[o.index % len(mix)], o),
                      should_stop=lambda: time.monotonic() >= deadline)
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
                  samples: list[Sample]) -> None:
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


@dataclass(frozen=True)
class ProcessRow:
    """One process over the soak: RSS at start, after warm-up and at the end (MiB; the last two medians over
    WINDOW_S), the growth between those two (%), threads and open fds at start and end."""

    process: str
    pid: int
    pid_changed: bool
    rss_start_mib: float
    rss_after_warmup_mib: float
    rss_end_mib: float
    growth_after_warmup_pct: float
    threads_start: int
    threads_end: int
    fds_start: int
    fds_end: int


@dataclass(frozen=True)
class MissingProcess:
    """A process that was not sampled for the whole run."""

    process: str
    note: str = "not present for the whole run (worker restarted?)"


def _mib(rss: int) -> float:
    return round(rss / 2**20, 1)


def process_row(name: str, samples: list[Sample], base: list[Sample],
                tail: list[Sample]) -> ProcessRow | MissingProcess:
    """The row of process `name`: start and end from the first and last sample, RSS medians over `base`
    (after the warm-up) and `tail` (the end)."""
    a, c = pick(samples[0], name), pick(samples[-1], name)
    b_rss, c_rss = median_rss(base, name), median_rss(tail, name)
    if a is None or c is None or b_rss is None or c_rss is None:
        return MissingProcess(name)
    return ProcessRow(process=name, pid=c.pid, pid_changed=a.pid != c.pid, rss_start_mib=_mib(a.rss),
                      rss_after_warmup_mib=_mib(b_rss), rss_end_mib=_mib(c_rss),
                      growth_after_warmup_pct=growth_pct(b_rss, c_rss), threads_start=a.threads,
                      threads_end=c.threads, fds_start=a.fds, fds_end=c.fds)


def process_rows(samples: list[Sample], warmup_s: float) -> list[ProcessRow | MissingProcess]:
    """Per process (the frontend, then the workers of the last sample): its ProcessRow, or MissingProcess."""
    last = samples[-1]
    base = [s for s in samples if warmup_s <= s.at < warmup_s + WINDOW_S] or [last]
    tail = [s for s in samples if s.at >= last.at - WINDOW_S]
    return [process_row(name, samples, base, tail) for name in ["frontend", *sorted(last.workers)]]


def percentile_ms(latencies_s: list[float], q: float) -> float | None:
    """The `q`-th latency percentile (toolkit.bench.aioclient.percentile) in ms, rounded to 0.1."""
    value = percentile(latencies_s, q)
    return None if value is None else round(value * 1000, 1)


def process_misses(rows: list[ProcessRow | MissingProcess]) -> list[str]:
    """The process targets missed: RSS growth above GROWTH_TARGET_PCT, a process missing or restarted."""
    missed = []
    for r in rows:
        if isinstance(r, MissingProcess):
            missed.append(f"{r.process}: {r.note}")
            continue
        if r.growth_after_warmup_pct > GROWTH_TARGET_PCT:
            missed.append(f"{r.process}: RSS grew {r.growth_after_warmup_pct} % after warm-up")
        if r.pid_changed:
            missed.append(f"{r.process}: pid changed during the run (worker restarted?)")
    return missed


def verdict(rows: list[ProcessRow | MissingProcess], tally: Tally) -> list[str]:
    """The targets missed (empty when all are met)."""
    missed = process_misses(rows)
    if tally.server_errors():
        missed.append(f"{tally.server_errors()} answers were 5xx")
    if tally.wrong:
        missed.append(f"{tally.wrong} wrong answers")
    if tally.client_errors or tally.skipped:
        missed.append(f"client errors {dict(tally.client_errors)}, skipped {tally.skipped}")
    return missed


@dataclass(frozen=True)
class RequestSummary:
    """The requests of the open-loop run: answers by HTTP status, 5xx, wrong answers, client errors, requests
    not started (MAX_IN_FLIGHT outstanding), latency percentiles (ms)."""

    answered: int
    statuses: dict[str, int]
    server_errors: int
    wrong: int
    client_errors: dict[str, int]
    skipped: int
    p50_ms: float | None
    p99_ms: float | None

    @classmethod
    def of(cls, tally: Tally) -> RequestSummary:
        return cls(tally.answered, {str(k): v for k, v in sorted(tally.statuses.items())}, tally.server_errors(),
                   tally.wrong, dict(tally.client_errors), tally.skipped, percentile_ms(tally.latencies, 50),
                   percentile_ms(tally.latencies, 99))


@dataclass(frozen=True)
class SoakReport:
    """The whole soak: its settings, per-process rows, the requests, the targets missed and every sample."""

    minutes: float
    rate_rps: float
    capacity_rps: float | None  # None when --rate was given (no probe)
    warmup_s: float
    median_window_s: float
    processes: list[ProcessRow | MissingProcess]
    requests: RequestSummary
    missed: list[str]
    samples: list[Sample]


def _process_line(r: ProcessRow | MissingProcess) -> str:
    if isinstance(r, MissingProcess):
        return f"{r.process:<22}  {r.note}"
    return (f"{r.process:<22}{r.pid:>8}{r.rss_start_mib:>11}{r.rss_after_warmup_mib:>9}{r.rss_end_mib:>9}"
            f"{r.growth_after_warmup_pct:>9}{r.threads_start:>5}->{r.threads_end:<4}{r.fds_start:>5}->{r.fds_end:<4}")


def print_report(report: SoakReport) -> None:
    print(f"\nsoak: {report.minutes} min at {report.rate_rps} req/s (capacity {report.capacity_rps} req/s), "
          f"warm-up {report.warmup_s} s; 'warm' and 'end' RSS are medians over {report.median_window_s:g} s")
    print(f"{'process':<22}{'pid':>8}{'RSS start':>11}{'warm':>9}{'end':>9}{'growth%':>9}{'threads':>10}{'fds':>10}")
    for row in report.processes:
        print(_process_line(row))
    t = report.requests
    print(f"requests: {t.answered} answered, statuses {t.statuses}, 5xx {t.server_errors}, wrong {t.wrong}, "
          f"client errors {t.client_errors}, skipped {t.skipped}, latency p50 {t.p50_ms} ms p99 {t.p99_ms} ms")
    print("PASS: every target met" if not report.missed else "FAIL:\n  " + "\n  ".join(report.missed))


def build_report(args: argparse.Namespace, capacity: float | None, rate: float, samples: list[Sample],
                 tally: Tally) -> SoakReport:
    rows = process_rows(samples, args.warmup_s)
    return SoakReport(minutes=args.minutes, rate_rps=round(rate, 1),
                      capacity_rps=round(capacity, 1) if capacity else None, warmup_s=args.warmup_s,
                      median_window_s=WINDOW_S, processes=rows, requests=RequestSummary.of(tally),
                      missed=verdict(rows, tally), samples=samples)


# --- main ----------------------------------------------------------------------------------------------


async def soak(server: LocalServer, args: argparse.Namespace, mix: list[Probe]) -> SoakReport:
    """Capacity probe (unless --rate), then the open-loop run with sampling; the report."""
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
    (args.out / "report.json").write_text(json.dumps(asdict(report), indent=2), encoding="utf-8")
    print_report(report)
    print(f"report: {args.out / 'report.json'}; server logs: {server.log_dir}")
    return 0 if not report.missed else 1


if __name__ == "__main__":
    sys.exit(main())
