"""A closed stdout (`predict ... | head`, `manage list | head -1`) ends a command quietly, as it ends Unix tools."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

SIGPIPE_EXIT = 141  # the status of a process killed by SIGPIPE (128 + 13), what a shell shows for `yes | head`


@contextmanager
def quiet_closed_pipe() -> Iterator[None]:
    """Run the body and flush stdout; when the reader of stdout went away, exit with SIGPIPE_EXIT and no
    traceback (stdout is pointed at /dev/null first: Python flushes it once more on the way out)."""
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise SystemExit(SIGPIPE_EXIT) from None
