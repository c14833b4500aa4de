"""Where a Ray cluster's CPU goes per request: wrk load on a running engine, the CPU of every process of the
cluster (the nodes' `ray start` processes and everything under them) around it, grouped by role.

    python -m toolkit.bench.peers.ray_profile --run-dir /tmp/r/run --concurrency 32 --seconds 10 \
        [--path /predictions/mnist] [--body build/models/mnist/heldout.npz]

Concurrency 0 measures the idle cluster. The cluster is one that `python -m toolkit.engines.ray start
--run-dir ...` started (its cluster.json and key file name the processes, the front's port and the key).
Prints the throughput and, per role (HAProxy, Serve's proxy, each deployment's replicas, the controller, GCS,
raylets, agents, idle workers), the % of one core it used and its CPU milliseconds per request. docs/ray.md's
breakdown comes from it (with py-spy for the split inside a process).
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import psutil
from tabulate import tabulate

from toolkit.bench.loadgen import LoadRequest, run_load
from toolkit.bench.payloads import first_digit, write_payloads
from toolkit.client.auth import read_keys
from toolkit.engines.ray.cluster import LocalRayCluster
from toolkit.paths import KEY_FILE_NAME, ROOT

# (pattern on the command line, role); the first match names the process
ROLES = (
    (r"^ray::ServeReplica:[^:]+:(\S+)", r"replica \1"),
    (r"^ray::ProxyActor", "Serve proxy"),
    (r"haproxy", "HAProxy"),
    (r"^ray::HAProxyManager", "HAProxy manager"),
    (r"^ray::ServeController", "Serve controller"),
    (r"gcs_server", "GCS"),
    (r"raylet", "raylets"),
    (r"^ray::(DashboardAgent|RuntimeEnvAgent)|dashboard|agent", "agents"),
    (r"^ray::IDLE", "idle workers"),
)


def role(cmdline: list[str]) -> str:
    """The role of a process from its command line (`other` when none matches)."""
    text = " ".join(cmdline)
    for pattern, name in ROLES:
        found = re.search(pattern, text)
        if found:
            return found.expand(name)
    return "other"


def cpu_by_process(pids: Sequence[int]) -> dict[int, tuple[str, float]]:
    """pid -> (role, user+system CPU seconds) of the processes `pids` and everything under them, now."""
    found: dict[int, tuple[str, float]] = {}
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    times = proc.cpu_times()
                    found[proc.pid] = (role(proc.cmdline()), times.user + times.system)
    return found


def profile(run_dir: Path, path: str, body: Path, concurrency: int, seconds: float) -> str:
    """The load's figures and the per-role table (str, for printing)."""
    cluster = LocalRayCluster(run_dir)
    state = cluster.state()
    if state is None:
        raise SystemExit(f"no cluster recorded in {run_dir}")
    pids = [node.pid for node in state.nodes if node.pid]
    payload = write_payloads(first_digit(body), run_dir / "profile-bodies")["json"]
    request = LoadRequest(f"http://127.0.0.1:{state.http_port}{path}", "POST", payload.path, payload.content_type)
    before, begin = cpu_by_process(pids), time.monotonic()
    if concurrency:
        load = run_load(request, read_keys(run_dir / KEY_FILE_NAME).inference, concurrency, seconds)
    else:  # idle: what the cluster spends with no request at all
        time.sleep(seconds)
    wall, after = time.monotonic() - begin, cpu_by_process(pids)
    per_role: dict[str, float] = defaultdict(float)
    for pid, (name, cpu_s) in after.items():  # named as before the load: a busy worker's title names its task
        known, cpu0_s = before.get(pid, (name, 0.0))
        per_role[known] += cpu_s - cpu0_s
    rps = load.throughput_rps if concurrency else 0.0
    rows = [(name, f"{100 * cpu_s / wall:.1f}", f"{1000 * cpu_s / (rps * wall):.3f}" if rps else "-")
            for name, cpu_s in sorted(per_role.items(), key=lambda item: -item[1])]
    total = sum(per_role.values())
    rows.append(("all", f"{100 * total / wall:.1f}", f"{1000 * total / (rps * wall):.3f}" if rps else "-"))
    head = (f"c{concurrency}: {rps:.0f} req/s, p50 {load.latency_ms.p50:.2f} ms, p99 {load.latency_ms.p99:.1f} ms,"
            f" statuses {load.statuses}") if concurrency else f"idle, {wall:.1f} s"
    return head + "\n" + tabulate(rows, headers=["role", "% of a core", "CPU ms / request"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m toolkit.bench.peers.ray_profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, required=True, help="the engine's run dir (cluster.json, keys)")
    parser.add_argument("--path", default="/predictions/mnist")
    parser.add_argument("--body", type=Path, default=ROOT / "build" / "models" / "mnist" / "heldout.npz",
                        help="heldout.npz whose first image is the JSON body")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[0, 1, 32], help="0: idle, no load")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    for concurrency in args.concurrency:
        print(profile(args.run_dir, args.path, args.body, concurrency, args.seconds), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
