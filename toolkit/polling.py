"""The one deadline poll: ask a probe every `every_s` seconds until it answers or `timeout_s` passes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll_until(probe: Callable[[], T], timeout_s: float, every_s: float = 0.2) -> T | None:
    """The first truthy result of `probe()`, asked at once and then every `every_s` seconds; None when
    `timeout_s` seconds passed without one (the probe is asked one last time at the deadline)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = probe()
        if result:
            return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        time.sleep(min(every_s, remaining))
