"""Retrying a prediction the server had no room for (`ServerBusyError`: a full model queue, HTTP 503 /
gRPC UNAVAILABLE with TorchServe's queue-full text, or 429 / RESOURCE_EXHAUSTED), with tenacity.

    policy = RetryPolicy(tries=5, total_s=10.0)      # the default of both inference clients and `predict`
    policy = RetryPolicy.off()                       # one try, no retry
    answer = policy.call(lambda: send_once())

Backoff is capped exponential with full jitter (tenacity's `wait_random_exponential`): before retry k (k = 1, 2,
...) the client sleeps a uniformly random time in [0, min(max_wait_s, first_wait_s * 2**(k-1))], so clients
refused by the same burst do not come back together. It stops after `tries` tries in all, or when the next try
would start more than `total_s` seconds after the first. Nothing else is retried: a refusal that is the
request's fault (4xx), a failed batch (503 "Prediction failed") or an unreachable server fail at once. A
prediction refused with 503 was never queued, so sending it again cannot run it twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, stop_before_delay, wait_random_exponential

from toolkit.errors import ServerBusyError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a busy server. Times in seconds; `tries` counts the first one too."""

    tries: int = 5
    total_s: float = 10.0
    first_wait_s: float = 0.1
    max_wait_s: float = 2.0

    def __post_init__(self) -> None:
        if self.tries < 1 or self.total_s < 0 or self.first_wait_s < 0 or self.max_wait_s < 0:
            raise ValueError(f"invalid retry policy {self}: need tries >= 1 and times >= 0")

    @classmethod
    def off(cls) -> RetryPolicy:
        """One try: a busy server's refusal is raised at once."""
        return cls(tries=1)

    def call(self, attempt: Callable[[], T], sleep: Callable[[float], None] | None = None) -> T:
        """`attempt()`, tried again while it raises ServerBusyError, within this policy. The last
        ServerBusyError is raised with its `attempts` and `waited_s` set; any other error at once."""
        retrying = Retrying(
            retry=retry_if_exception_type(ServerBusyError),
            stop=stop_after_attempt(self.tries) | stop_before_delay(self.total_s),
            wait=wait_random_exponential(multiplier=self.first_wait_s, max=self.max_wait_s),
            reraise=True,
            **({"sleep": sleep} if sleep else {}),
        )
        try:
            return retrying(attempt)
        except ServerBusyError as exc:
            stats = retrying.statistics
            exc.attempts = int(stats.get("attempt_number", 1))
            exc.waited_s = float(stats.get("delay_since_first_attempt", 0.0))
            raise


NO_RETRY = RetryPolicy.off()
