"""Cluster tier: the Ray Serve engine on a two-node local Ray cluster of its own.

One cluster for the whole tier (a start costs two Ray nodes and a deploy, ~30 s on two cores): its nodes on
two loopback addresses drawn at random (127.<a>.<b>.2 and .3, never make ray-serve's 127.0.0.2/.3), every
port from a free block, Serve's proxy on a free port of 127.0.0.1. It is driven through the engine's own
command line in subprocesses (`python -m toolkit.engines.ray start|status|stop`), so the test process never
joins the cluster, and stopped by those same commands (by the nodes' pids) at the end.

Deployed: mnist, tabular and digit_detector as shipped, and `mnist_autoscale` (mnist with `ray:` min 1 / max 2
replicas, a target of 2 requests in flight and short scaling delays) for the autoscaling test, and
`mnist_small_queue` (one replica admitting one request at a time) for the full-queue test, with the engine's
default tuning (HAProxy in front, each archive its own application). Two logical CPUs per node, so that the head
alone has room for every replica when the fault tests lose the other node.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.paths import STORE, require_built
from toolkit.archive import build_variant
from toolkit.client.auth import Keys, read_keys
from toolkit.paths import MODEL_CONFIGS
from toolkit.process import free_ports

START_TIMEOUT_S = 600
# Ray's logical CPUs per node: the head alone must hold every replica once the other node is lost
# (tests/cluster/test_ray_faults.py): mnist 2 + tabular 2 + digit_detector 1 + mnist_autoscale up to 2 +
# mnist_small_queue 1, 0.125 each (the default ray.num_cpus).
CPUS_PER_NODE = 2
SHIPPED = ("mnist", "tabular", "digit_detector")  # deployed as shipped
AUTOSCALE = {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 2, "upscale_delay_s": 1.0,
             "downscale_delay_s": 5.0}
# One replica that admits one request at a time (batches of 1, one in flight, no queue): any burst overflows it.
SMALL_QUEUE = {"min_replicas": 1, "max_replicas": 1, "max_ongoing_requests": 1, "max_queued_requests": 0}


@dataclass(frozen=True)
class Cluster:
    """A running test cluster: its run dir, the proxy's URL, the inference key and the node addresses."""

    run_dir: Path
    url: str
    keys: Keys
    ips: list[str]

    def engine(self, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
        """`python -m toolkit.engines.ray <args> --run-dir <run_dir>`, output captured."""
        cmd = [sys.executable, "-m", "toolkit.engines.ray", *args, "--run-dir", str(self.run_dir)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)

    def status(self) -> dict:
        """`status --json`: alive node addresses, replica states per deployment, replica actors."""
        done = self.engine("status", "--json")
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout)


def _addresses() -> list[str]:
    rng = random.Random()
    a, b = rng.randrange(10, 250), rng.randrange(10, 250)
    return [f"127.{a}.{b}.2", f"127.{a}.{b}.3"]


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    for name in SHIPPED:
        require_built(STORE / f"{name}.mar", "make archive")
    root = tmp_path_factory.mktemp("ray")
    store = root / "store"
    store.mkdir()
    for name in SHIPPED:
        (store / f"{name}.mar").write_bytes((STORE / f"{name}.mar").read_bytes())
    build_variant(MODEL_CONFIGS / "mnist.yaml", "mnist_autoscale", store, top={"ray": AUTOSCALE})
    build_variant(MODEL_CONFIGS / "mnist.yaml", "mnist_small_queue", store, top={"batchSize": 1, "ray": SMALL_QUEUE})
    ips, http_port = _addresses(), free_ports().inference
    run = Cluster(root / "run", f"http://127.0.0.1:{http_port}", Keys("", ""), ips)
    done = run.engine("start", "--model-store", str(store), "--ips", *ips, "--free-ports", "--http-port",
                      str(http_port), "--cpus-per-node", str(CPUS_PER_NODE), timeout_s=START_TIMEOUT_S)
    try:
        assert done.returncode == 0, f"ray engine did not start:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        yield Cluster(run.run_dir, run.url, read_keys(run.run_dir / "key_file.json"), ips)
    finally:
        stopped = run.engine("stop", timeout_s=300)
        assert stopped.returncode == 0, stopped.stderr[-2000:]
