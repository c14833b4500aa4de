"""The one asyncio HTTP load client of the project: a bounded closed loop over aiohttp, one outcome per request.

    outcomes = asyncio.run(closed_loop(base_url, key, [PostRequest("/predictions/mnist", body, "image/png")],
                                       total=2000, concurrency=32))

`concurrency` clients share one session (one connection each); each takes the next request index until `total`
requests were sent (or `should_stop()` says so), so at most `concurrency` requests are in flight and the run
is bounded. Request `i` is `requests[i % len(requests)]`. `burst` sends N requests at once instead (N tasks,
N connections), the bursts of toolkit.bench.bursts. Every request gets exactly one `Outcome`: its HTTP
status and body, or the client exception that replaced them (status None). Used by the soak (capacity probe
and open loop), the REST side of toolkit.bench.compare and the e2e tests. `percentile` is the project's one
latency percentile (nearest rank).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from toolkit.client.auth import auth_header

DEFAULT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class PostRequest:
    """One POST: path under the base URL (`/predictions/mnist`), body and content type (None: no header)."""

    path: str
    body: bytes
    content_type: str | None = "application/json"


@dataclass(frozen=True)
class Outcome:
    """One request of a run: its index in the run, when it was sent and answered (s since the run's start),
    the HTTP status (None when no HTTP answer came), the body, and the client exception's name ("" when an
    HTTP answer came)."""

    index: int
    sent_at: float
    done_at: float
    status: int | None
    body: bytes = b""
    error: str = ""

    @property
    def latency_s(self) -> float:
        return self.done_at - self.sent_at

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def detail(self) -> str:
        """Empty for a 200; else the error body's message (or its first 200 bytes), or the client exception name."""
        if self.status is None:
            return self.error
        if self.status == 200:
            return ""
        try:
            return str(json.loads(self.body).get("message", ""))
        except (ValueError, AttributeError):
            return self.body[:200].decode("utf-8", "replace")


def session(key: str, limit: int, timeout_s: float = DEFAULT_TIMEOUT_S) -> aiohttp.ClientSession:
    """An aiohttp session sending `key` as bearer token, at most `limit` connections, `timeout_s` per request."""
    return aiohttp.ClientSession(headers=auth_header(key), timeout=aiohttp.ClientTimeout(total=timeout_s),
                                 connector=aiohttp.TCPConnector(limit=limit))


async def post(http: aiohttp.ClientSession, base_url: str, req: PostRequest, start: float, index: int = 0) -> Outcome:
    """POST one request; its Outcome with times relative to `start` (a time.monotonic() value)."""
    headers = {"Content-Type": req.content_type} if req.content_type else {}
    sent = time.monotonic() - start
    try:
        async with http.post(f"{base_url}{req.path}", data=req.body, headers=headers) as resp:
            body = await resp.read()
            return Outcome(index, sent, time.monotonic() - start, resp.status, body)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Outcome(index, sent, time.monotonic() - start, None, error=type(exc).__name__)


async def bounded(
    call: Callable[[int], Awaitable[Outcome]],
    total: int,
    concurrency: int,
    on_outcome: Callable[[Outcome], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[Outcome]:
    """The closed loop itself, for any protocol: `concurrency` clients each await `call(i)` for the next index
    `i` until `total` calls were made or `should_stop()` is true. Returns the outcomes in index order."""
    outcomes: list[Outcome] = []
    next_index = 0

    async def client() -> None:
        nonlocal next_index
        while next_index < total and not (should_stop and should_stop()):
            index, next_index = next_index, next_index + 1
            outcome = await call(index)
            outcomes.append(outcome)
            if on_outcome:
                on_outcome(outcome)

    await asyncio.gather(*(client() for _ in range(max(1, min(concurrency, total)))))
    return sorted(outcomes, key=lambda o: o.index)


async def closed_loop(
    base_url: str,
    key: str,
    requests: Sequence[PostRequest],
    total: int | None = None,
    concurrency: int = 16,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    on_outcome: Callable[[Outcome, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[Outcome]:
    """POST `total` requests (default: each of `requests` once) with `concurrency` in flight, request `i`
    being `requests[i % len(requests)]`; stop early when `should_stop()` is true. `on_outcome(outcome,
    start)` sees each outcome as it comes. Returns the outcomes in index order."""
    if not requests:
        raise ValueError("closed_loop needs at least one request")
    start = time.monotonic()
    async with session(key, concurrency, timeout_s) as http:
        return await bounded(
            lambda i: post(http, base_url, requests[i % len(requests)], start, i),
            len(requests) if total is None else total,
            concurrency,
            (lambda o: on_outcome(o, start)) if on_outcome else None,
            should_stop,
        )


async def burst(
    base_url: str, key: str, request: PostRequest, n: int, timeout_s: float = DEFAULT_TIMEOUT_S
) -> list[Outcome]:
    """`n` copies of `request` all at once, as a user's load test does (`asyncio.gather` of one task per request):
    one session of `n` connections, one each, every task started before any answer is awaited. Times are
    relative to the moment the first task starts; outcomes in index order. Bounded: `n` requests, each at most
    `timeout_s` (an unanswered one is an Outcome with status None and error "TimeoutError")."""
    start = time.monotonic()
    async with session(key, n, timeout_s) as http:
        return list(await asyncio.gather(*(post(http, base_url, request, start, i) for i in range(n))))


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank `q`-th percentile (0 < q <= 100) of `values`, in their unit; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]
