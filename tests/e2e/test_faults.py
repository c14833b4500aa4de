"""Faults on a real TorchServe 0.12, each on servers of this module only (never the session server):
a worker killed under load, a full job queue, inference slower than responseTimeout, models that fail to
load (on the module server), and `make stop` under load and the drain that toolkit.server.drain offers
instead (each on a server of its own, started for that test and stopped by it).

"Nothing lost" means: every request sent gets exactly one outcome, an HTTP answer (200 or 5xx) and never a
client timeout. Figures are printed (`pytest -s`) and written as JSON under the test's tmp dir.

Model variants are built from config/models/tabular.yaml by toolkit.archive into the module's own store:
- tabular_queue:   jobQueueSize 2, batchSize 1, 1000 ms per batch (a slow model with a tiny queue)
- tabular_timeout: responseTimeout 1 s, batchSize 4, maxBatchDelay 200 ms, 3000 ms per batch
- tabular_slow:    batchSize 8, 500 ms per batch (long enough for requests to be in flight at a stop)
The slow ones run the test-only handler tests/e2e/slow_handler.py (`handler.options.delay_ms`).
- broken_pt / broken_import: tabular.mar with a corrupt model file / a handler importing a missing module
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.e2e._helpers import (
    CONFIG,
    START_TIMEOUT_S,
    Outcome,
    PostRequest,
    assert_error,
    build_variant,
    rewrite_mar,
    send_together,
    wait_for,
)
from tests.paths import BUILD, ROOT, STORE, require_built
from toolkit.bench.aioclient import closed_loop
from toolkit.client.management import worker_pids
from toolkit.errors import ServerError
from toolkit.process import free_ports
from toolkit.server.diagnose import register_explained
from toolkit.server.drain import drain_and_stop
from toolkit.server.local import LocalServer

TABULAR_YAML = ROOT / "config" / "models" / "tabular.yaml"
SLOW_HANDLER = "tests/e2e/slow_handler.py:SlowTabular"  # handler.module, relative to the project root
QUEUE_SIZE = 2
QUEUE_DELAY_MS = 1000
KILL_LOAD_TOTAL = 2000
KILL_AFTER = 400  # completed requests before the SIGKILL
CONCURRENCY = 16
CLIENT_TIMEOUT_S = 30.0
RECOVERS_WITHIN_S = 60.0  # "recovers at all"; the target of 10 s is reported, not asserted
MISSING_MODULE = "nonexistent_dependency_xyz"
WORKER_DIED = "Worker died."
QUEUE_FULL = 'Model "tabular_queue" has no worker to serve inference request'


def sample_body() -> bytes:
    return (BUILD / "tabular" / "samples" / "sample_0.json").read_bytes()


def expected_answer() -> dict:
    labels = json.loads((BUILD / "tabular" / "samples" / "expected.json").read_text())["sample_0.json"]
    return {"predictions": labels, "labels": ["malignant" if p == 0 else "benign" for p in labels]}


def slow(delay_ms: int) -> dict:
    """`handler:` keys of the test-only slow handler, sleeping `delay_ms` per batch."""
    return {"module": SLOW_HANDLER, "options": {"delay_ms": delay_ms}}


def build_store(root: Path) -> Path:
    """The module's model store: tabular.mar, the slow/timeout variants and the broken archives."""
    store = root / "store"
    store.mkdir()
    one_worker = {"minWorkers": 1, "maxWorkers": 1}  # these tests follow one worker's pid through its faults
    build_variant(TABULAR_YAML, "tabular", root, store, one_worker, {})
    build_variant(
        TABULAR_YAML,
        "tabular_queue",
        root,
        store,
        {**one_worker, "batchSize": 1, "maxBatchDelay": 1, "jobQueueSize": QUEUE_SIZE},
        slow(QUEUE_DELAY_MS),
    )
    build_variant(
        TABULAR_YAML,
        "tabular_timeout",
        root,
        store,
        {**one_worker, "batchSize": 4, "maxBatchDelay": 200, "responseTimeout": 1},
        slow(3000),
    )
    build_variant(TABULAR_YAML, "tabular_slow", root, store, {**one_worker, "batchSize": 8}, slow(500))
    rewrite_mar(
        STORE / "tabular.mar",
        store / "broken_pt.mar",
        lambda name, data: b"not a TorchScript zip" if name.endswith(".pt") else data,
    )
    future = b"from __future__ import annotations\n"
    rewrite_mar(STORE / "tabular.mar", store / "broken_import.mar",
                lambda name, data: data.replace(future, future + f"import {MISSING_MODULE}\n".encode(), 1)
                if name == "handlers/tabular.py" else data)
    return store


@pytest.fixture(scope="module")
def fault_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module's model store (build_store), shared by its servers."""
    require_built(STORE / "tabular.mar", "make archive")
    return build_store(tmp_path_factory.mktemp("faults"))


@dataclass(frozen=True)
class Faults:
    server: LocalServer
    store: Path


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory, fault_store: Path) -> Iterator[Faults]:
    """The module server: tabular and its queue/timeout/slow variants, 1 worker each."""
    models = ["tabular.mar", "tabular_queue.mar", "tabular_timeout.mar", "tabular_slow.mar"]
    srv = LocalServer(tmp_path_factory.mktemp("faults_run"), CONFIG, fault_store, models, ports=free_ports())
    with srv.running(START_TIMEOUT_S):
        yield Faults(srv, fault_store)


@pytest.fixture
def slow_server(tmp_path_factory: pytest.TempPathFactory, fault_store: Path) -> Iterator[LocalServer]:
    """A server of the calling test only, with tabular_slow only (the test stops it; `running` stops it
    again on exit, a no-op then)."""
    srv = LocalServer(tmp_path_factory.mktemp("slow_run"), CONFIG, fault_store, ["tabular_slow.mar"],
                      ports=free_ports())
    with srv.running(START_TIMEOUT_S):
        yield srv


def pids(srv: LocalServer, model: str) -> list[int]:
    """Worker pids of `model` (default version) on `srv`."""
    with srv.management_client(timeout_s=30) as mgmt:
        return worker_pids(mgmt, model)


def inference_key(srv: LocalServer) -> str:
    return srv.read_keys().inference


def report(tmp_path: Path, name: str, figures: dict) -> None:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(figures, indent=2))
    print(f"\n{name}: {json.dumps(figures)}\n  written to {path}")


def new_ready_worker(srv: LocalServer, model: str, old_pid: int) -> int | None:
    """The pid of a READY worker of `model` other than `old_pid`, else None."""
    with srv.management_client(timeout_s=10) as mgmt:
        (desc,) = mgmt.describe(model)
    ready = [w["pid"] for w in desc["workers"] if w["status"] == "READY" and w["pid"] != old_pid]
    return ready[0] if ready else None


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# --- a worker killed under load --------------------------------------------------------------------------


def kill_figures(outcomes: list[Outcome], kill_at: float, old_pid: int, new_pid: int) -> dict:
    failed = [o for o in outcomes if o.status != 200]
    resumed = [o.done_at for o in outcomes if o.status == 200 and o.sent_at > kill_at]
    return {
        "sent": KILL_LOAD_TOTAL, "answered": len(outcomes), "ok": len(outcomes) - len(failed),
        "failed": len(failed), "failures": dict(Counter(f"{o.status} {o.detail}" for o in failed)),
        "killed_at_s": round(kill_at, 3), "recovery_s": round(min(resumed) - kill_at, 3) if resumed else None,
        "duration_s": round(max(o.done_at for o in outcomes), 3), "old_pid": old_pid, "new_pid": new_pid,
    }


def test_worker_killed_under_load_loses_nothing_and_recovers(faults: Faults, tmp_path: Path) -> None:
    srv = faults.server
    (old_pid,) = pids(srv, "tabular")
    kill: dict[str, float] = {}
    done = 0

    def on_outcome(outcome: Outcome, start: float) -> None:
        nonlocal done
        done += 1
        if done == KILL_AFTER:
            os.kill(old_pid, signal.SIGKILL)
            kill["at"] = time.monotonic() - start

    load = closed_loop(srv.urls.inference, inference_key(srv), [PostRequest("/predictions/tabular", sample_body())],
                       KILL_LOAD_TOTAL, CONCURRENCY, CLIENT_TIMEOUT_S, on_outcome)
    outcomes = asyncio.run(asyncio.wait_for(load, 240))
    new_pid = wait_for(lambda: new_ready_worker(srv, "tabular", old_pid), RECOVERS_WITHIN_S)
    figures = kill_figures(outcomes, kill["at"], old_pid, new_pid)
    report(tmp_path, "worker_kill", figures)

    assert len(outcomes) == KILL_LOAD_TOTAL, "a request got no outcome or two"
    no_http = [o for o in outcomes if o.status is None]
    assert no_http == [], f"requests without an HTTP answer (hung or cut): {no_http[:5]}"
    assert all(o.status == 200 or 500 <= o.status < 600 for o in outcomes), figures["failures"]
    assert all(o.detail == WORKER_DIED for o in outcomes if o.status != 200), figures["failures"]
    assert gone(old_pid)
    assert figures["recovery_s"] is not None and figures["recovery_s"] < RECOVERS_WITHIN_S, figures


# --- a full job queue ------------------------------------------------------------------------------------


def test_full_queue_refuses_at_once_and_serves_what_it_accepted(faults: Faults, tmp_path: Path) -> None:
    """jobQueueSize 2, one worker taking one request per batch for 1 s: of a burst of 12, about 3 are
    accepted (1 running + 2 queued); the rest are refused with 503 before any accepted one is answered."""
    srv = faults.server
    burst = 12
    outcomes = asyncio.run(closed_loop(srv.urls.inference, inference_key(srv),
                                       [PostRequest("/predictions/tabular_queue", sample_body())],
                                       burst, burst, CLIENT_TIMEOUT_S))
    accepted = [o for o in outcomes if o.status == 200]
    rejected = [o for o in outcomes if o.status == 503]
    report(tmp_path, "queue_full", {"sent": burst, "accepted": len(accepted), "rejected": len(rejected),
                                    "rejected_within_s": round(max((o.done_at for o in rejected), default=0), 3),
                                    "first_accepted_answer_s": round(min(o.done_at for o in accepted), 3)})

    assert len(accepted) + len(rejected) == burst == len(outcomes), Counter(o.status for o in outcomes)
    assert 1 <= len(accepted) <= QUEUE_SIZE + 1
    assert all(o.detail.startswith(QUEUE_FULL) for o in rejected), {o.detail for o in rejected}
    assert max(o.done_at for o in rejected) < min(o.done_at for o in accepted), "a 503 waited for the queue"


# --- inference slower than responseTimeout --------------------------------------------------------------


def test_batch_slower_than_response_timeout(faults: Faults, tmp_path: Path) -> None:
    """tabular_timeout sleeps 3 s per batch against a 1 s responseTimeout: its whole batch is answered 500
    "Worker died." and the worker is replaced. "Later requests succeed" means: the server stays healthy,
    a request to another model sent in the same instant and every later one are answered, and the
    replaced worker comes back READY. The slow model itself can never succeed (every batch takes 3 s):
    its next batch fails the same way and its worker is replaced again, so the restart loop is reliable."""
    srv = faults.server
    (old_pid,) = pids(srv, "tabular_timeout")
    slow = PostRequest("/predictions/tabular_timeout", sample_body())
    other = PostRequest("/predictions/tabular", sample_body())
    answers = send_together(srv.urls.inference, inference_key(srv), [slow, slow, slow, other])
    for answer in answers[:3]:
        assert_error(answer, 500, "InternalServerException", WORKER_DIED)
    assert (answers[3].status, answers[3].json()) == (200, expected_answer())

    new_pid = wait_for(lambda: new_ready_worker(srv, "tabular_timeout", old_pid), RECOVERS_WITHIN_S)
    assert gone(old_pid)
    assert srv.health_problem() is None
    later = send_together(srv.urls.inference, inference_key(srv), [other, slow])
    assert (later[0].status, later[0].json()) == (200, expected_answer())
    assert_error(later[1], 500, "InternalServerException", WORKER_DIED)
    third = wait_for(lambda: new_ready_worker(srv, "tabular_timeout", new_pid), RECOVERS_WITHIN_S)
    report(tmp_path, "response_timeout", {"batch": 3, "answers": [a.status for a in answers[:3]],
                                          "worker_pids": [old_pid, new_pid, third]})


# --- models that fail to load ----------------------------------------------------------------------------

LOAD_FAILURES = [
    ("broken_pt", "model file tabular.pt is not a model file this toolkit serves (first bytes b'not a To')"),
    ("broken_import", f"ModuleNotFoundError(\"No module named '{MISSING_MODULE}'\")"),
]


@pytest.mark.parametrize(("name", "cause"), LOAD_FAILURES, ids=[n for n, _ in LOAD_FAILURES])
def test_load_failure_names_its_cause_and_server_stays_healthy(faults: Faults, name: str, cause: str) -> None:
    srv = faults.server
    with srv.management_client() as mgmt:
        with pytest.raises(ServerError) as info:
            register_explained(mgmt, srv.log_dir, f"{name}.mar", model_name=name, initial_workers=1)
        raw = info.value.__cause__
        assert isinstance(raw, ServerError)
        assert (raw.status, raw.kind, raw.message) == (
            500,
            "InternalServerException",
            f"Failed to start workers for model {name} version: 1.0",
        ), "TorchServe's own answer changed: it used to hide the cause"
        explained = info.value
        assert (explained.status, explained.kind) == (500, "InternalServerException")
        assert explained.message.startswith(f"{raw.message}: ")
        assert cause in explained.message, explained.message
        registered = {m["modelName"] for m in mgmt.models()}
        if name in registered:  # 0.12 keeps some failed models registered with no worker
            mgmt.unregister(name)
    assert srv.health_problem() is None
    request = PostRequest("/predictions/tabular", sample_body())
    answer = send_together(srv.urls.inference, inference_key(srv), [request])[0]
    assert (answer.status, answer.json()) == (200, expected_answer())


# --- stop under load, and the drain -----------------------------------------------------------------------


async def load_with_stop(srv: LocalServer, stop: Callable[[], object], close_door: bool) -> tuple[list[Outcome], dict]:
    """Steady load on tabular_slow; after 32 answers run `stop()` in a thread. With `close_door`, clients
    send nothing new from that moment (the door closed upstream); without, they go on until stop returns or
    a request sent after the stop call gets no HTTP answer (they give up instead of hammering a dead port)."""
    started, door_closed, stopped = asyncio.Event(), threading.Event(), threading.Event()
    marks: dict[str, float] = {}
    done = 0

    def on_outcome(outcome: Outcome, start: float) -> None:
        nonlocal done
        done += 1
        marks.setdefault("start", start)
        if done == 32:
            started.set()
        if outcome.status is None and outcome.sent_at > marks.get("stop_called", float("inf")):
            stopped.set()

    def should_stop() -> bool:
        return stopped.is_set() or (close_door and door_closed.is_set())

    async def stopper() -> None:
        await started.wait()
        marks["stop_called"] = time.monotonic() - marks["start"]
        door_closed.set()
        marks["result"] = await asyncio.to_thread(stop)
        marks["stop_returned"] = time.monotonic() - marks["start"]
        stopped.set()

    request = PostRequest("/predictions/tabular_slow", sample_body())
    load = closed_loop(srv.urls.inference, inference_key(srv), [request], 1_000_000, CONCURRENCY, CLIENT_TIMEOUT_S,
                       on_outcome, should_stop)
    outcomes, _ = await asyncio.wait_for(asyncio.gather(load, stopper()), 120)
    return outcomes, marks


def in_flight(outcomes: list[Outcome], at: float) -> list[Outcome]:
    return [o for o in outcomes if o.sent_at < at < o.done_at]


def test_drain_finishes_accepted_requests_then_stops(slow_server: LocalServer, tmp_path: Path) -> None:
    """Door closed upstream at the moment drain_and_stop starts: every request in flight (one 0.5 s batch
    running, the next queued) is answered 200, then the server stops."""
    srv = slow_server
    outcomes, marks = asyncio.run(load_with_stop(srv, lambda: drain_and_stop(srv, deadline_s=30), close_door=True))
    drain = marks["result"]
    flying = in_flight(outcomes, marks["stop_called"])
    report(tmp_path, "drain", {"answered": len(outcomes), "statuses": dict(Counter(o.status for o in outcomes)),
                               "in_flight_at_drain": len(flying), "drain": drain.__dict__,
                               "drain_s": round(marks["stop_returned"] - marks["stop_called"], 3)})
    assert flying, "nothing was in flight when the drain began"
    assert Counter(o.status for o in outcomes) == {200: len(outcomes)}
    assert drain.idle and drain.pending_at_stop == 0 and drain.was_running
    assert not srv.is_running()


def test_make_stop_under_load_cuts_what_is_in_flight(slow_server: LocalServer, tmp_path: Path) -> None:
    """`make stop` = LocalServer.stop = `torchserve --stop` (SIGTERM) while 16 clients keep sending to a
    model that takes 0.5 s per batch. Measured in TorchServe 0.12: every request in flight at the signal
    (running or queued) loses its connection without an HTTP answer; nothing hangs; later connections are
    refused. Stops a server of its own (slow_server)."""
    srv = slow_server
    outcomes, marks = asyncio.run(load_with_stop(srv, srv.stop, close_door=False))
    flying = in_flight(outcomes, marks["stop_called"])
    figures = {
        "answered": len(outcomes), "statuses": dict(Counter(o.status for o in outcomes)),
        "in_flight_at_stop_call": len(flying),
        "their_outcomes": dict(Counter(str(o.status or o.detail) for o in flying)),
        "stop_s": round(marks["stop_returned"] - marks["stop_called"], 3),
        "client_errors": dict(Counter(o.detail for o in outcomes if o.status is None)),
    }
    report(tmp_path, "stop_under_load", figures)
    assert not srv.is_running()
    assert flying, "nothing was in flight when stop was called"
    assert all(o.status is None or o.status == 200 or o.status >= 500 for o in outcomes), figures
    assert not any("Timeout" in o.detail for o in outcomes), "a request hung until the client timeout"
    cut = [o for o in flying if o.status is None]
    assert cut, "expected TorchServe 0.12 to cut in-flight requests at SIGTERM; if it drains now, update drain.py"
