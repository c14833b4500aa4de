"""Faults under steady load on the two-node test cluster (tests/cluster/conftest.py): the second node lost as a
machine is lost (SIGKILL of its `ray start` and every process under it), then joining again; and Serve's
controller killed. Only processes of this cluster are touched: the pids its cluster.json records and their
children.

Every request must get an answer within the client's timeout: 200, or TorchServe's 503 for "no room now"
(`toolkit.client.error_body.is_busy`), which `predict` and the Python clients retry. The times are printed
(`pytest -s`) and reported in docs/ray.md; they are not asserted (numbers come from runs, not from asserts).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psutil
import pytest

from tests.cluster.conftest import Cluster
from tests.cluster.test_ray_serve import png, replicas_of
from toolkit.bench.aioclient import Outcome, PostRequest, closed_loop, percentile
from toolkit.client.error_body import error_from_body, is_busy
from toolkit.engines.ray.cluster import LocalRayCluster
from toolkit.polling import poll_until

REQUEST_TIMEOUT_S = 30.0
LOAD_CLIENTS = 16
WATCH_LIMIT_S = 120.0  # the longest a load runs while waiting for the cluster to recover
SETTLE_S = 3.0  # load kept on after the recovery, to see requests answered by the recovered placement
MODEL = "mnist_1.0"


@dataclass
class Watch:
    """What a load run saw: when the fault struck and when the cluster recovered (s since the load started)."""

    fault_at: float | None = None
    recovered_at: float | None = None


def process_tree(pid: int) -> list[psutil.Process]:
    """`pid` and every process under it (collected before any is killed)."""
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def kill_tree(processes: list[psutil.Process]) -> None:
    """SIGKILL every process of `processes`, as a machine that vanished: nothing gets to clean up."""
    for proc in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGKILL)


def node_pid(cluster: Cluster, name: str) -> int:
    state = LocalRayCluster(cluster.run_dir).state()
    return next(node.pid for node in state.nodes if node.name == name)


def controller(cluster: Cluster) -> psutil.Process:
    """Serve's controller: the `ray::ServeController` worker under the head node."""
    procs = process_tree(node_pid(cluster, "head"))
    return next(p for p in procs if p.cmdline() and p.cmdline()[0].startswith("ray::ServeController"))


def placement(cluster: Cluster, deployment: str = MODEL) -> tuple[dict[str, int], set[str]]:
    """The deployment's replica states and the nodes its alive replicas run on."""
    status = cluster.status()
    nodes = {a["node_ip"] for a in status["actors"] if a["deployment"] == deployment}
    return status["replicas"].get(deployment, {}), nodes


def spread_out(cluster: Cluster) -> bool:
    states, nodes = placement(cluster)
    return states == {"RUNNING": 2} and nodes == set(cluster.ips)


def load_until(cluster: Cluster, strike: Callable[[], None], recovered: Callable[[], bool],
               after: int = 300) -> tuple[list[Outcome], Watch]:
    """Steady load on mnist (LOAD_CLIENTS in flight); `strike()` once `after` requests were answered, then the
    load goes on until `recovered()` (polled) and SETTLE_S more, at most WATCH_LIMIT_S."""
    watch = Watch()
    request = PostRequest("/predictions/mnist", png(), "image/png")

    def on_outcome(outcome: Outcome, start: float) -> None:
        if outcome.index == after and watch.fault_at is None:
            strike()
            watch.fault_at = time.monotonic() - start

    async def run() -> list[Outcome]:
        start = time.monotonic()

        async def watcher() -> None:
            while time.monotonic() - start < WATCH_LIMIT_S:
                if watch.fault_at is not None and watch.recovered_at is None and await asyncio.to_thread(recovered):
                    watch.recovered_at = time.monotonic() - start
                if watch.recovered_at is not None and time.monotonic() - start > watch.recovered_at + SETTLE_S:
                    return
                await asyncio.sleep(0.5)

        task = asyncio.create_task(watcher())
        outcomes = await closed_loop(cluster.url, cluster.keys.inference, [request], total=10_000_000,
                                     concurrency=LOAD_CLIENTS, timeout_s=REQUEST_TIMEOUT_S, on_outcome=on_outcome,
                                     should_stop=task.done)
        await task
        return outcomes

    return asyncio.run(run()), watch


def answered_or_retryable(outcomes: list[Outcome]) -> tuple[int, list[Outcome]]:
    """How many got TorchServe's retryable 503, and the outcomes that are neither 200 nor that."""
    retryable = [o for o in outcomes if o.status == 503 and is_busy(503, error_from_body(503, o.body).message)]
    bad = [o for o in outcomes if o.status != 200 and o not in retryable]
    return len(retryable), bad


def summary(outcomes: list[Outcome], watch: Watch) -> str:
    latencies = [o.latency_s * 1000 for o in outcomes]
    after = [o for o in outcomes if watch.fault_at is not None and o.sent_at >= watch.fault_at]
    return (f"{len(outcomes)} requests ({len(after)} sent after the fault), max latency {max(latencies):.0f} ms"
            f" (p99 {percentile(latencies, 99):.0f} ms)")


@pytest.fixture
def spread_cluster(cluster: Cluster) -> Iterator[Cluster]:
    """The cluster with mnist's replicas on both nodes before and after the test (a test that loses a node
    brings it back)."""
    if not spread_out(cluster):
        done = cluster.engine("spread", timeout_s=300)
        assert done.returncode == 0, done.stderr[-2000:]
    assert poll_until(lambda: spread_out(cluster), 120, every_s=2.0), placement(cluster)
    yield cluster
    if len(cluster.status()["nodes"]) < len(cluster.ips):
        cluster.engine("join", "--node", "node-1", timeout_s=300)


def test_a_node_lost_under_load_loses_no_answer_and_its_replicas_move_to_the_survivor(
        spread_cluster: Cluster) -> None:
    cluster = spread_cluster
    head_ip, lost_ip = cluster.ips
    victims = process_tree(node_pid(cluster, "node-1"))

    def moved() -> bool:
        states, nodes = placement(cluster)
        return states == {"RUNNING": 2} and nodes == {head_ip}

    outcomes, watch = load_until(cluster, lambda: kill_tree(victims), moved)
    retryable, bad = answered_or_retryable(outcomes)
    print(f"node lost: {summary(outcomes, watch)}; {retryable} answered 503 (retried by the clients); mnist's 2 "
          f"replicas RUNNING on the surviving node {watch.recovered_at - watch.fault_at:.1f} s after the kill"
          if watch.recovered_at else f"node lost: {summary(outcomes, watch)}; replicas not moved")
    assert watch.fault_at is not None, "the load ended before the kill"
    assert not bad, f"{len(bad)} requests neither 200 nor a retryable 503: {[(o.status, o.detail) for o in bad[:5]]}"
    assert watch.recovered_at is not None, f"mnist not running on {head_ip} alone: {placement(cluster)}"
    assert lost_ip not in cluster.status()["nodes"]


def test_a_node_that_joins_again_gets_replicas_back_under_load(spread_cluster: Cluster) -> None:
    cluster = spread_cluster
    kill_tree(process_tree(node_pid(cluster, "node-1")))
    assert poll_until(lambda: placement(cluster) == ({"RUNNING": 2}, {cluster.ips[0]}), WATCH_LIMIT_S,
                      every_s=1.0), placement(cluster)
    joined: dict = {}

    def join() -> None:  # under the load: the node starts again and the replicas roll out over it
        begin = time.monotonic()
        done = cluster.engine("join", "--node", "node-1", timeout_s=300)
        joined.update(returncode=done.returncode, took_s=time.monotonic() - begin, stderr=done.stderr[-2000:])

    outcomes, watch = load_until(cluster, lambda: threading.Thread(target=join, daemon=True).start(),
                                 lambda: "returncode" in joined and spread_out(cluster), after=100)
    retryable, bad = answered_or_retryable(outcomes)
    print(f"node joined: `join` returned after {joined.get('took_s', 0):.1f} s (node start + replicas rolled out "
          f"over it); {summary(outcomes, watch)}; {retryable} answered 503")
    assert joined.get("returncode") == 0, joined.get("stderr")
    assert not bad, f"{len(bad)} requests neither 200 nor a retryable 503: {[(o.status, o.detail) for o in bad[:5]]}"
    assert spread_out(cluster), placement(cluster)


def test_serve_s_controller_killed_under_load_serving_goes_on(spread_cluster: Cluster) -> None:
    cluster = spread_cluster
    victim = controller(cluster)

    def back() -> bool:
        try:
            fresh = controller(cluster)
        except StopIteration:
            return False
        return fresh.pid != victim.pid and replicas_of(cluster, MODEL) == {"RUNNING": 2}

    outcomes, watch = load_until(cluster, lambda: kill_tree([victim]), back)
    retryable, bad = answered_or_retryable(outcomes)
    print(f"controller killed: {summary(outcomes, watch)}; {retryable} answered 503; a new controller reports "
          f"mnist RUNNING {watch.recovered_at - watch.fault_at:.1f} s after the kill"
          if watch.recovered_at else f"controller killed: {summary(outcomes, watch)}; no new controller")
    assert not bad, f"{len(bad)} requests neither 200 nor a retryable 503: {[(o.status, o.detail) for o in bad[:5]]}"
    assert watch.recovered_at is not None, "Serve's controller did not come back"
