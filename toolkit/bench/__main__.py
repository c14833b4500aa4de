"""`python -m toolkit.bench`: find the throughput/latency limit of a served model and the settings that reach it.

    python -m toolkit.bench                 # full matrix (~12-15 min on 2 cores), starts its own TorchServe
    python -m toolkit.bench --quick         # reduced matrix (~2 min)
    python -m toolkit.bench --url http://127.0.0.1:8080 --key-file .ts_run/key_file.json   # a running server

Writes `<out-dir>/<timestamp>.json`, `.md` and `.png` (throughput vs p99 per configuration). Load comes from
wrk (closed loop, fixed concurrency; `apt-get install -y wrk`). Axes can be narrowed one by one
(`--batch-sizes 8 --delays 5 --workers 1 --threads 1 --concurrency 1 4 --duration 2`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

import torch
import ts

from toolkit.bench import report, serverstats
from toolkit.bench.analysis import best_raw, recommend, targets
from toolkit.bench.bursts import BURST_SIZES, QUICK_SIZES
from toolkit.bench.loadgen import LoadGenError, find_wrk
from toolkit.bench.plan import BenchPlan, MatrixSpec, PeerPlan, QuietPolicy, RemotePlan
from toolkit.bench.results import BenchResult, RunMeta, Versions
from toolkit.bench.run import run_local, run_remote
from toolkit.bench.servers import Remote, remote_target
from toolkit.paths import BENCH_RESULTS, BUILD_MODELS, CONFIG_PROPERTIES, KEY_FILE, MODEL_CONFIGS, MODEL_STORE
from toolkit.properties import Urls, default_urls

FULL = {"batch_sizes": [1, 8, 32], "delays": [1, 5, 10], "workers": [1, 2], "threads": [1, 2],
        "concurrency": [1, 8, 32, 64], "duration": 3.0, "warmup": 1.0}
QUICK = {"batch_sizes": [1, 32], "delays": [1], "workers": [1, 2], "threads": [1],
         "concurrency": [1, 32], "duration": 2.0, "warmup": 1.0}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m toolkit.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mnist",
                        help="model name: config/models/<model>.yaml, build/models/<model>/")
    parser.add_argument("--config", type=Path, default=CONFIG_PROPERTIES,
                        help="TorchServe config the bench's own server starts from")
    parser.add_argument("--quick", action="store_true", help=f"reduced matrix {QUICK}")
    for name in ("batch-sizes", "delays", "workers", "threads", "concurrency"):
        full = FULL[name.replace("-", "_")]
        parser.add_argument(f"--{name}", type=int, nargs="+", help=f"override the axis (full: {full})")
    parser.add_argument("--duration", type=float, help="seconds per measured cell (full: 3)")
    parser.add_argument("--warmup", type=float, help="seconds of unrecorded load per registered variant (full: 1)")
    parser.add_argument("--jvm-warmup", type=float, default=60.0, help="seconds of load on a fresh frontend "
                        "before measuring (its JIT compiler burns a core meanwhile)")
    parser.add_argument("--input-concurrency", type=int, nargs="+", default=[1, 32],
                        help="concurrencies of the input-path and config-variant phases")
    parser.add_argument("--raw-seconds", type=float, default=1.0, help="seconds per raw measurement; 0 skips it")
    parser.add_argument("--no-shipped", action="store_true", help="skip measuring the model as its YAML ships it")
    parser.add_argument("--bursts", type=int, nargs="*", metavar="N",
                        help=f"burst sizes, N requests at once against the model as shipped (full: "
                        f"{list(BURST_SIZES)}, quick: {list(QUICK_SIZES)}); `--bursts` alone skips them")
    parser.add_argument("--server-variants", action=argparse.BooleanOptionalAction, default=False,
                        help="also compare config.properties variants (logging, netty threads, system metrics), each "
                        "on a fresh server (+~6 min; a fresh JVM stays slower for minutes, so compare with care)")
    _peer_options(parser)
    _quiet_options(parser)
    parser.add_argument("--out-dir", type=Path, default=BENCH_RESULTS)
    parser.add_argument("--publish-plot", type=Path, help="also copy the plot here (bench/plot.png)")
    _remote_options(parser)
    return parser


def _peer_options(parser: argparse.ArgumentParser) -> None:
    peers = parser.add_argument_group("peers: other servers on the same model, body and load, each started fresh")
    peers.add_argument("--peers", action=argparse.BooleanOptionalAction, default=True,
                       help="measure the peers (toolkit.bench.peers) and our TorchServe and Ray engine afresh")
    peers.add_argument("--peer-systems", nargs="+", metavar="NAME", help="only these systems (names as reported)")
    peers.add_argument("--peer-warmup", type=float, default=15.0,
                       help="seconds of c32 load after ready, the same for every system (full: 15)")
    peers.add_argument("--peer-first", type=float, default=10.0,
                       help="the first seconds of the warm-up recorded on their own (warm start; full: 10)")
    peers.add_argument("--peer-duration", type=float, help="seconds per peer cell (default: --duration)")
    peers.add_argument("--peer-concurrency", type=int, nargs="+", default=[1, 32])
    peers.add_argument("--ray-tunings", nargs="+", default=[], metavar="TUNING",
                       help="also our Ray engine with these Serve settings, one system each, e.g. 'front=proxy' "
                       "'front=routed access_log=1' (toolkit.engines.ray.tuning.Tuning), named 'ours: Ray engine "
                       "[<tuning>]'; they run whatever --peer-systems says")


def _quiet_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-other-cpu", type=float, default=30.0,
                        help="%% of a core other processes may use during a cell before it is re-run; 0 = never "
                        "wait or re-run (cells still record others' CPU)")
    parser.add_argument("--retries", type=int, default=1, help="re-runs of a cell measured while others were busy")
    parser.add_argument("--quiet-budget", type=float, default=300.0,
                        help="seconds the whole run may spend waiting for quiet and re-running noisy cells")


def _remote_options(parser: argparse.ArgumentParser) -> None:
    remote = parser.add_argument_group("a running server instead of the bench's own")
    remote.add_argument("--url", help="inference base URL, e.g. http://127.0.0.1:8080")
    remote.add_argument("--management-url", help="default: config/config.properties' management address")
    remote.add_argument("--metrics-url", help="default: config/config.properties' metrics address")
    remote.add_argument("--key-file", type=Path, help=f"its key_file.json (default: {KEY_FILE})")
    remote.add_argument("--model-store", type=Path, default=MODEL_STORE,
                        help="that server's model store (variant archives are written there, then removed)")


def _axis(args: argparse.Namespace, name: str) -> tuple:
    """An axis of the matrix: the option's values, else the quick or full matrix's."""
    value = getattr(args, name)
    return tuple(value if value is not None else (QUICK if args.quick else FULL)[name])


def _duration_s(args: argparse.Namespace) -> float:
    return args.duration or (QUICK if args.quick else FULL)["duration"]


def matrix_spec(args: argparse.Namespace) -> MatrixSpec:
    """The matrix of the options (`--quick` or the full one, narrowed axis by axis), with its quiet policy."""
    quiet = None
    if args.max_other_cpu > 0:
        quiet = QuietPolicy(args.max_other_cpu, args.retries, budget_s=args.quiet_budget)
    return MatrixSpec(_axis(args, "batch_sizes"), _axis(args, "delays"), _axis(args, "workers"),
                      _axis(args, "threads"), _axis(args, "concurrency"), _duration_s(args),
                      args.warmup or (QUICK if args.quick else FULL)["warmup"], quiet)


def peer_plan(args: argparse.Namespace) -> PeerPlan:
    """The peers phase of the options; never against a running server (it starts every system afresh)."""
    return PeerPlan(enabled=args.peers and not args.url,
                    systems=tuple(args.peer_systems) if args.peer_systems else None, warmup_s=args.peer_warmup,
                    first_s=args.peer_first, duration_s=args.peer_duration or _duration_s(args),
                    concurrencies=tuple(args.peer_concurrency), ray_tunings=tuple(args.ray_tunings))


def remote_plan(args: argparse.Namespace) -> RemotePlan | None:
    """The running server of `--url` (keys from its key file, frontend pid from its port); None without --url."""
    if not args.url:
        return None
    urls = default_urls()
    remote = Remote(Urls(args.url, args.management_url or urls.management, args.metrics_url or urls.metrics, "", ""),
                    args.key_file or KEY_FILE)
    return RemotePlan(remote_target(remote), args.model_store)


def burst_sizes(args: argparse.Namespace) -> tuple[int, ...]:
    if args.bursts is not None:
        return tuple(args.bursts)
    return QUICK_SIZES if args.quick else BURST_SIZES


def plan_from_args(args: argparse.Namespace) -> BenchPlan:
    """The checked plan of the options: wrk installed, the model's YAML, model file and held-out set present.

    Raises LoadGenError (no wrk) or FileNotFoundError naming the missing file and `make models`.
    """
    find_wrk()
    build = BUILD_MODELS / args.model
    files = (MODEL_CONFIGS / f"{args.model}.yaml", build / f"{args.model}.pt", build / "heldout.npz")
    for path in files:
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing (run `make models` first)")
    return BenchPlan(model=args.model, model_yaml=files[0], model_file=files[1], heldout=files[2],
                     config=args.config, matrix=matrix_spec(args), input_concurrencies=tuple(args.input_concurrency),
                     raw_seconds=args.raw_seconds, shipped=not args.no_shipped, jvm_warmup_s=args.jvm_warmup,
                     server_variants=args.server_variants, bursts=burst_sizes(args), peers=peer_plan(args),
                     remote=remote_plan(args))


def run_meta(plan: BenchPlan, argv: Sequence[str], stamp: str) -> RunMeta:
    """How and where this run happens; `load_after` and `wall_s` are filled in at the end."""
    local = plan.remote is None
    return RunMeta(timestamp=stamp, command=shlex.join(["python", "-m", "toolkit.bench", *argv]),
                   cpus=os.cpu_count(), affinity=len(os.sched_getaffinity(0)),
                   load_before=[round(x, 2) for x in serverstats.load_average()], matrix=plan.matrix,
                   mode="local" if local else "remote", config=str(plan.config),
                   versions=Versions(torch.__version__, ts.__version__, sys.version.split()[0]),
                   server_config_text=plan.config.read_text(encoding="utf-8") if local else None,
                   peer_warmup_s=plan.peers.warmup_s)


def run_phases(plan: BenchPlan, result: BenchResult) -> bool:
    """Run the bench into `result`; on a failure keep what was measured, record the error, return True."""
    try:
        (run_local if plan.remote is None else run_remote)(plan, result, lambda line: print(line, flush=True))
    except Exception:  # any failure: the partial result is still written, with the traceback
        result.error = traceback.format_exc()
        print(f"error: the run stopped early; partial results are written\n{result.error}", file=sys.stderr)
        if result.cells and not result.targets:
            result.recommendation = result.recommendation or recommend(result.cells, best_raw(result.raw))
            result.targets = targets(result)
        return True
    return False


def _terminate(signum: int, _frame: object) -> None:
    """SIGTERM -> SystemExit, so the server the bench started is stopped and its temp dir removed."""
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _terminate)
    args = build_parser().parse_args(argv)
    try:
        plan = plan_from_args(args)
    except (LoadGenError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    result = BenchResult(run_meta(plan, argv, stamp))
    begin = time.monotonic()
    failed = run_phases(plan, result)
    result.meta.load_after = [round(x, 2) for x in serverstats.load_average()]
    result.meta.wall_s = round(time.monotonic() - begin, 1)
    paths = report.write_all(result, args.out_dir, stamp)
    if args.publish_plot:
        shutil.copy2(paths["plot"], args.publish_plot)
    for goal in result.targets:
        print(f"{'ok ' if goal.met else 'NO '} {goal.goal}: {goal.measured} (target {goal.target})")
    print("\n".join(f"wrote {kind}: {path}" for kind, path in paths.items()))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
