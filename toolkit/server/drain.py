"""Drain, then stop, a local TorchServe 0.12: wait (up to a deadline) until it has nothing left to do.

What TorchServe 0.12 itself offers, measured by tests/e2e/test_faults.py:
- `torchserve --stop` (SIGTERM to the frontend; what `make stop` runs): new connections are refused and
  every request still in flight, running in a worker or waiting in a queue, loses its connection (reset,
  no HTTP answer).
- scaling a model to 0 workers or unregistering it: the running batch is answered 500 "Worker died.",
  the requests waiting in its queue get NO answer (they hang until the client gives up), new ones get
  503 / 404.
- no API pauses the inference listener or a model's queue.
So TorchServe cannot stop taking new work while it finishes what it accepted: that door has to be closed
upstream (load balancer, clients). `drain_and_stop` then lets the accepted work finish: it polls until no
model version has a queued request and nothing arrived or completed for `quiet_s` seconds (a batch still
running in a worker without any other activity is assumed finished after that time, which is stretched to
twice the longest last batch TorchServe reports), or until `deadline_s`; then it stops the server
(`LocalServer.stop`). What is still in flight at the deadline is cut exactly as by a plain stop.

    python -m toolkit.server stop [--run-dir .ts_run] [--drain-deadline 30] [--quiet 2]
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import requests

from toolkit.client.management import ManagementApi, all_versions
from toolkit.client.metrics import scrape
from toolkit.errors import KeyFileError, ServerError, ServerUnreachableError
from toolkit.server.local import LocalServer

UNOBSERVABLE = (KeyFileError, ServerError, ServerUnreachableError, requests.RequestException)
# `make stop`'s drain (scripts/stop.sh passes its own DRAIN_DEADLINE_S, default the same; the container's
# deadline is toolkit.server.container.CONTAINER_DRAIN_DEADLINE_S).
DRAIN_DEADLINE_S = 30.0  # the longest wait for queued and running requests
DRAIN_QUIET_S = 2.0  # seconds without activity that mean idle


@dataclass(frozen=True)
class Activity:
    """One look at the server: requests queued over all model versions, and the frontend's cumulative
    inference counters (arrivals; summed latency, which moves on every completion)."""

    pending: int
    arrivals: float
    latency_us: float
    longest_batch_s: float

    def same_counters(self, other: Activity) -> bool:
        return (self.arrivals, self.latency_us) == (other.arrivals, other.latency_us)


@dataclass(frozen=True)
class DrainReport:
    """How a drain went: idle (True) or deadline reached, seconds waited, requests still queued when the
    server was stopped, and whether it was running at all."""

    idle: bool
    waited_s: float
    pending_at_stop: int
    was_running: bool


def observe(mgmt: ManagementApi, metrics_url: str) -> Activity:
    """Queue lengths from the management API and counters from the metrics endpoint."""
    pending = sum(int(d.get("jobQueueStatus", {}).get("pendingRequests", 0)) for d in all_versions(mgmt))
    arrivals = latency = longest_ms = 0.0
    for name, _labels, value in scrape(metrics_url):
        if name == "ts_inference_requests_total":
            arrivals += value
        elif name == "ts_inference_latency_microseconds":
            latency += value
        elif name == "PredictionTime":
            longest_ms = max(longest_ms, value)
    return Activity(pending, arrivals, latency, longest_ms / 1000)


def wait_idle(
    look: Callable[[], Activity], deadline_s: float, quiet_s: float, poll_s: float = 0.2
) -> tuple[bool, Activity]:
    """Poll `look()` until nothing is queued and the counters stood still for the quiet time (True), or
    `deadline_s` passed (False). Returns the verdict and the last Activity."""
    start = time.monotonic()
    last = look()
    quiet_since = start
    while True:
        now = time.monotonic()
        quiet = max(quiet_s, 2 * last.longest_batch_s)
        if last.pending == 0 and now - quiet_since >= quiet:
            return True, last
        if now - start >= deadline_s:
            return False, last
        time.sleep(poll_s)
        current = look()
        if current.pending or not current.same_counters(last):
            quiet_since = time.monotonic()
        last = current


def drain_and_stop(
    server: LocalServer, deadline_s: float = DRAIN_DEADLINE_S, quiet_s: float = DRAIN_QUIET_S
) -> DrainReport:
    """Wait until `server` is idle or `deadline_s` passed, then stop it. A server whose state cannot be read
    (no key file, API down) is stopped at once."""
    if not server.is_running():
        return DrainReport(idle=True, waited_s=0.0, pending_at_stop=0, was_running=False)
    start = time.monotonic()
    try:
        with server.management_client(timeout_s=10) as mgmt:
            idle, last = wait_idle(lambda: observe(mgmt, server.urls.metrics), deadline_s, quiet_s)
        pending = last.pending
    except UNOBSERVABLE:
        idle, pending = False, -1
    waited = round(time.monotonic() - start, 3)
    server.stop()
    return DrainReport(idle=idle, waited_s=waited, pending_at_stop=pending, was_running=True)
