"""The processes the toolkit starts, and the loopback ports they listen on: one leaf every tier may use.

    OwnedProcess(pid, fingerprint)      a process we started, found again by its recorded pid; `live()` is None
                                        for a stale record or a pid the system gave to someone else since
    OwnedProcess.from_pid_file(...)     the same, with the pid read from a pid file
    stop_family(procs, grace_s)         wait, then SIGTERM, then SIGKILL what is left (psutil.wait_procs)
    free_ports() / port_block(count)    free loopback ports from FREE_PORT_RANGE, never handed out twice
    bindable, check_ports_free, tail    a port bindable now; PortInUseError; the end of a log file

Processes are stopped by pid only, never by name.
"""

from __future__ import annotations

import contextlib
import random
import signal
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from toolkit.errors import PortInUseError
from toolkit.properties import LOOPBACK, Ports

# Ports are drawn from here: below Linux's default ephemeral range (32768-60999), above well-known ones.
FREE_PORT_RANGE = (20000, 32000)
SIGNAL_WAIT_S = 10.0  # how long stop_family waits after each of SIGTERM and SIGKILL
_REAP_CHECK_S = 0.25  # psutil.wait_procs waits for a zombie to be reaped: look at the survivors this often
_HANDED_OUT: set[int] = set()  # ports this process handed out, never handed out twice


def read_pid_file(path: Path) -> int | None:
    """The pid written first in a pid file, None when the file is missing or holds no pid."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def alive(proc: psutil.Process) -> bool:
    """True while the process exists and is not a zombie (an orphan's reaper may be slow, or absent in a
    container without an init)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def wait_gone(procs: Sequence[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """Wait up to `timeout_s` for `procs` to exit (psutil.wait_procs); the ones still alive after it. A zombie
    counts as gone: wait_procs would wait for its reaping, so the survivors are looked at every _REAP_CHECK_S."""
    deadline = time.monotonic() + timeout_s
    left = [p for p in procs if alive(p)]
    while left and (remaining := deadline - time.monotonic()) > 0:
        _, survivors = psutil.wait_procs(left, timeout=min(remaining, _REAP_CHECK_S))
        left = [p for p in survivors if alive(p)]
    return left


def signal_all(procs: Sequence[psutil.Process], kill: bool) -> None:
    """SIGTERM (or SIGKILL with `kill`) each process of `procs` that is still alive."""
    for proc in procs:
        if alive(proc):
            with contextlib.suppress(psutil.Error):
                proc.kill() if kill else proc.terminate()


def stop_family(procs: Sequence[psutil.Process], grace_s: float, signal_wait_s: float = SIGNAL_WAIT_S) -> None:
    """Wait `grace_s` for `procs` to exit, then SIGTERM what is left, then SIGKILL (`signal_wait_s` each)."""
    left = wait_gone(procs, grace_s)
    for kill in (False, True):
        if not left:
            return
        signal_all(left, kill)
        left = wait_gone(left, signal_wait_s)


@dataclass(frozen=True)
class Fingerprint:
    """What tells our process from another one that has the same pid: every string of `argv` is an argument
    of its command line, and its working directory is `cwd` (when given)."""

    argv: tuple[str, ...]
    cwd: Path | None = None

    def matches(self, proc: psutil.Process) -> bool:
        """Whether `proc` has this fingerprint (False when it cannot be inspected, or is gone)."""
        try:
            cmdline = proc.cmdline()
            same_cwd = self.cwd is None or Path(proc.cwd()).resolve() == self.cwd.resolve()
        except psutil.Error:
            return False
        return same_cwd and all(arg in cmdline for arg in self.argv)


@dataclass(frozen=True)
class OwnedProcess:
    """A process the toolkit started and recorded by `pid` (a pid file, a state file). `live()` finds it again:
    alive, not a zombie and with our `fingerprint`, so a stale record or a reused pid is never taken for
    ours."""

    pid: int | None
    fingerprint: Fingerprint

    @classmethod
    def from_pid_file(cls, pid_file: Path, fingerprint: Fingerprint) -> OwnedProcess:
        """The process whose pid `pid_file` holds (none when the file is missing or empty)."""
        return cls(read_pid_file(pid_file), fingerprint)

    def live(self) -> psutil.Process | None:
        """The running process, None when it is gone or the pid is now someone else's."""
        if self.pid is None:
            return None
        try:
            proc = psutil.Process(self.pid)
        except psutil.Error:
            return None
        return proc if self.fingerprint.matches(proc) and alive(proc) else None

    def stop(self, grace_s: float, ask: Callable[[psutil.Process], object] | None = None) -> bool:
        """Stop the process and every process below it: `ask` it to exit (default: SIGTERM to it alone), wait
        `grace_s` for all of them, then `stop_family`'s SIGTERM and SIGKILL. False when it was not running."""
        proc = self.live()
        if proc is None:
            return False
        try:
            family = [proc, *proc.children(recursive=True)]
        except psutil.Error:  # it exited just now
            family = [proc]
        with contextlib.suppress(psutil.Error):
            (ask or _terminate)(proc)
        stop_family(family, grace_s)
        return True


def _terminate(proc: psutil.Process) -> None:
    proc.send_signal(signal.SIGTERM)


def bindable(port: int) -> bool:
    """True when a TCP socket can bind 127.0.0.1:`port` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def check_ports_free(ports: Sequence[int]) -> None:
    """Raise PortInUseError naming the first port that cannot be bound on 127.0.0.1."""
    for port in ports:
        if not bindable(port):
            raise PortInUseError(f"port {port} on {LOOPBACK} is already in use")


def port_block(count: int, tries: int = 200) -> list[int]:
    """`count` consecutive ports, all bindable on 127.0.0.1 now and none handed out before by this process,
    at a random place in FREE_PORT_RANGE. (Not the kernel's ephemeral range, i.e. bind to port 0: the kernel
    hands recently released ports out again, so two servers started back to back collided, and outgoing
    connections take their local ports from that range.) PortInUseError after `tries` draws found none."""
    rng = random.SystemRandom()
    start, stop = FREE_PORT_RANGE
    for _ in range(tries):
        first = rng.randrange(start, stop - count)
        block = list(range(first, first + count))
        if not _HANDED_OUT.intersection(block) and all(bindable(port) for port in block):
            _HANDED_OUT.update(block)
            return block
    raise PortInUseError(f"no block of {count} free loopback ports in {start}..{stop}")


def free_ports() -> Ports:
    """The five listener ports of one TorchServe: distinct ports drawn one by one like `port_block(1)`."""
    return Ports(*(port_block(1)[0] for _ in range(5)))


def tail(path: Path, lines: int) -> str:
    """The last `lines` lines of a text file, or a note that it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"({path} not readable)"
    return "\n".join(text.splitlines()[-lines:])
