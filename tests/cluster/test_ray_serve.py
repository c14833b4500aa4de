"""The same archives on Ray Serve (toolkit.engines.ray): TorchServe's API, tokens, answers, batching, placement,
fault tolerance, autoscaling and bursts, on a two-node local cluster (tests/cluster/conftest.py)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import pytest
import requests

from tests.cluster.conftest import Cluster
from tests.heldout import heldout, served_labels
from tests.heldout import post_all as post_bodies
from tests.paths import BUILD, require_built
from toolkit.bench.aioclient import PostRequest, burst, closed_loop, percentile
from toolkit.client.error_body import busy_or_same, error_from_body
from toolkit.errors import ServerBusyError
from toolkit.polling import poll_until
from toolkit.torchserve import NO_WORKER, TOKEN_FAILED

MNIST_SAMPLES = BUILD / "mnist" / "samples"


def png(name: str = "3.png") -> bytes:
    return (MNIST_SAMPLES / name).read_bytes()


def post_all(cluster: Cluster, path: str, bodies: list[tuple[bytes, str]], in_flight: int) -> list:
    """tests.heldout.post_all against the cluster's proxy, with its key."""
    return post_bodies(cluster.url, cluster.keys.inference, path, bodies, in_flight)


def replicas_of(cluster: Cluster, deployment: str) -> dict[str, int]:
    return cluster.status()["replicas"].get(deployment, {})


def running(cluster: Cluster, deployment: str) -> int:
    return replicas_of(cluster, deployment).get("RUNNING", 0)


def test_both_nodes_are_alive_and_replicas_span_them(cluster: Cluster) -> None:
    status = cluster.status()
    assert sorted(status["nodes"]) == sorted(cluster.ips)
    assert status["replicas"]["mnist_1.0"] == {"RUNNING": 2}, status["replicas"]
    placed = {a["node_ip"] for a in status["actors"] if a["deployment"] in ("mnist_1.0", "tabular_1.0")}
    assert placed == set(cluster.ips), f"model replicas on {placed}, nodes {cluster.ips}"


def test_a_request_without_the_key_is_refused_as_torchserve_refuses_it(cluster: Cluster) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": cluster.keys.inference}):
        resp = requests.post(f"{cluster.url}/predictions/mnist", data=png(), headers=headers, timeout=30)
        assert resp.status_code == 400, headers
        assert resp.json() == {"code": 400, "type": "InvalidKeyException", "message": TOKEN_FAILED}
    ping = requests.get(f"{cluster.url}/ping", headers={"Authorization": f"Bearer {cluster.keys.inference}"},
                        timeout=30)
    assert (ping.status_code, ping.json()) == (200, {"status": "Healthy"})


def test_unknown_model_and_version_get_torchserve_s_404(cluster: Cluster) -> None:
    auth = {"Authorization": f"Bearer {cluster.keys.inference}"}
    nope = requests.post(f"{cluster.url}/predictions/nope", data=b"x", headers=auth, timeout=30)
    assert (nope.status_code, nope.json()["type"]) == (404, "ModelNotFoundException")
    version = requests.post(f"{cluster.url}/predictions/mnist/9.9", data=png(), headers=auth, timeout=30)
    assert (version.status_code, version.json()["type"]) == (404, "ModelVersionNotFoundException")
    explicit = requests.post(f"{cluster.url}/predictions/mnist/1.0", data=png(), headers=auth, timeout=30)
    assert (explicit.status_code, explicit.json()["predicted_label"]) == (200, 3)


def test_every_sample_form_is_answered_as_by_torchserve(cluster: Cluster) -> None:
    expected = json.loads(require_built(MNIST_SAMPLES / "expected.json", "make models").read_text())
    bodies = [((MNIST_SAMPLES / name).read_bytes(), "image/png") for name in sorted(expected)]
    tab_samples = BUILD / "tabular" / "samples"
    tab_expected = json.loads((tab_samples / "expected.json").read_text())
    answers = post_all(cluster, "/predictions/mnist", bodies, in_flight=8)
    assert [a["predicted_label"] for _, a in answers] == [expected[n] for n in sorted(expected)]
    tab = post_all(cluster, "/predictions/tabular",
                   [((tab_samples / n).read_bytes(), "application/json") for n in sorted(tab_expected)], 4)
    assert [a["predictions"] for _, a in tab] == [tab_expected[n] for n in sorted(tab_expected)]


@pytest.mark.parametrize("model", ["mnist", "tabular"])
def test_held_out_answers_equal_torchserve_s(cluster: Cluster, model: str) -> None:
    """heldout.npz `pred` is what TorchServe answers for each row (tests/e2e/test_predictions.py proves that
    equality on a real TorchServe), so equal labels here mean equal answers on both engines."""
    bodies, _, torchserve = heldout(model)
    answers = post_all(cluster, f"/predictions/{model}", bodies, in_flight=32)
    assert all(status == 200 for status, _ in answers)
    served = served_labels(answers)
    assert served.shape == torchserve.shape
    assert (served == torchserve).all(), f"{int((served != torchserve).sum())} differ from TorchServe"


def test_a_bad_request_inside_a_batch_gets_its_400_and_batch_mates_their_200(cluster: Cluster) -> None:
    good = [(png(f"{i}.png"), "image/png") for i in range(7)]
    bad = (json.dumps({"image": [0] * 28}).encode(), "application/json")  # one row: no image
    for _ in range(3):  # three rounds: batch-mates are whatever arrives together, answers must not depend on it
        answers = post_all(cluster, "/predictions/mnist", [*good[:3], bad, *good[3:]], in_flight=8)
        statuses = [status for status, _ in answers]
        assert statuses == [200, 200, 200, 400, 200, 200, 200, 200]
        assert answers[3][1]["type"] == "validation_error" and "28" in answers[3][1]["message"]
        assert [a["predicted_label"] for s, a in answers if s == 200] == list(range(7))


def test_a_burst_of_2000_concurrent_requests_is_answered_in_full(cluster: Cluster) -> None:
    request = PostRequest("/predictions/mnist", png(), "image/png")
    outcomes = asyncio.run(burst(cluster.url, cluster.keys.inference, request, 2000, timeout_s=180))
    statuses = [o.status for o in outcomes]
    latencies = [o.latency_s * 1000 for o in outcomes]
    print(f"ray burst 2000: last answer {max(o.done_at for o in outcomes):.1f} s, p50 {percentile(latencies, 50):.0f}"
          f" ms, p99 {percentile(latencies, 99):.0f} ms")
    assert statuses.count(200) == 2000, {s: statuses.count(s) for s in set(statuses)}


def test_a_full_queue_answers_torchserve_s_503_at_once_and_the_client_retries_it(cluster: Cluster) -> None:
    request = PostRequest("/predictions/mnist_small_queue", png(), "image/png")
    outcomes = asyncio.run(burst(cluster.url, cluster.keys.inference, request, 400, timeout_s=120))
    refused = [o for o in outcomes if o.status == 503]
    assert {o.status for o in outcomes} == {200, 503}, {o.status for o in outcomes}
    for outcome in refused:
        assert outcome.body == NO_WORKER.body(model="mnist_small_queue")
        assert isinstance(busy_or_same(error_from_body(503, outcome.body)), ServerBusyError), "clients retry it"
    slowest_refusal = max(o.latency_s for o in refused)
    print(f"small queue: {len(refused)} of 400 refused at once (slowest refusal {slowest_refusal * 1000:.0f} ms)")


def test_a_replica_killed_under_load_loses_no_answer_and_is_replaced(cluster: Cluster) -> None:
    victim = next(a for a in cluster.status()["actors"] if a["deployment"] == "mnist_1.0")
    killed: dict[str, float] = {}

    def kill_once(outcome, start: float) -> None:
        if outcome.index == 200 and not killed:
            os.kill(victim["pid"], signal.SIGKILL)
            killed["at"] = time.monotonic() - start

    outcomes = asyncio.run(closed_loop(cluster.url, cluster.keys.inference, [PostRequest("/predictions/mnist", png(),
                                       "image/png")], total=1500, concurrency=16, timeout_s=120,
                                       on_outcome=kill_once))
    begin = time.monotonic()
    assert killed, "the load ended before the kill"
    unanswered = [o for o in outcomes if o.status is None]
    assert not unanswered, f"{len(unanswered)} requests got no HTTP answer: {unanswered[:3]}"
    failed = [o for o in outcomes if o.status != 200]
    assert all(o.status >= 500 for o in failed), {o.status for o in failed}
    first_ok_after = min((o.done_at for o in outcomes if o.status == 200 and o.sent_at > killed["at"]), default=None)
    back = poll_until(lambda: running(cluster, "mnist_1.0") == 2, 120, every_s=1.0)
    print(f"replica kill: {len(failed)} of {len(outcomes)} answered 5xx; first 200 sent after the kill answered "
          f"{(first_ok_after or 0) - killed['at']:.2f} s after it; 2 replicas RUNNING again "
          f"{time.monotonic() - begin:.1f} s after the load ended")
    assert back, f"mnist replicas not replaced: {replicas_of(cluster, 'mnist_1.0')}"
    assert len(failed) <= 64, f"{len(failed)} failures for one killed replica of two"


def test_autoscaling_adds_a_replica_under_load_and_removes_it_after(cluster: Cluster) -> None:
    assert running(cluster, "mnist_autoscale_1.0") == 1
    request = PostRequest("/predictions/mnist_autoscale", png(), "image/png")
    scaled: dict[str, float] = {}
    start = time.monotonic()

    def scaled_up() -> bool:
        if running(cluster, "mnist_autoscale_1.0") >= 2:
            scaled["up_s"] = time.monotonic() - start
        return "up_s" in scaled or time.monotonic() - start > 90

    async def load_until_scaled() -> list:
        async def watch() -> None:
            while not await asyncio.to_thread(scaled_up):
                await asyncio.sleep(1.0)

        watcher = asyncio.create_task(watch())
        outcomes = await closed_loop(cluster.url, cluster.keys.inference, [request], total=100_000, concurrency=16,
                                     timeout_s=60, should_stop=watcher.done)
        await watcher
        return outcomes

    outcomes = asyncio.run(load_until_scaled())
    assert "up_s" in scaled, f"no second replica within 90 s of load: {replicas_of(cluster, 'mnist_autoscale_1.0')}"
    assert {o.status for o in outcomes} == {200}
    stopped = time.monotonic()
    down = poll_until(lambda: running(cluster, "mnist_autoscale_1.0") == 1
                      and sum(replicas_of(cluster, "mnist_autoscale_1.0").values()) == 1, 120, every_s=1.0)
    print(f"autoscaling: 1 -> 2 replicas {scaled['up_s']:.1f} s into the load ({len(outcomes)} requests); back to 1 "
          f"{time.monotonic() - stopped:.1f} s after it stopped")
    assert down, f"did not scale back to 1: {replicas_of(cluster, 'mnist_autoscale_1.0')}"
