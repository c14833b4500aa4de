"""Operating-system pieces of running TorchServe: java, free loopback ports, processes by pid, log tails."""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path

import psutil

from toolkit.errors import JavaNotFoundError, PortInUseError
from toolkit.polling import poll_until
from toolkit.properties import LOOPBACK, Ports

JAVA_MAJOR = 17
JAVA_INSTALL = "apt-get install -y openjdk-17-jre-headless"
JAVA_MISSING = f"java not found: TorchServe needs Java {JAVA_MAJOR}. Install it with: {JAVA_INSTALL}"
# free_ports() draws from here: below Linux's default ephemeral range (32768-60999), above well-known ones.
FREE_PORT_RANGE = (20000, 32000)
_HANDED_OUT: set[int] = set()  # ports free_ports() returned in this process, never handed out twice


def _java_major(java: str) -> int:
    """The major version `java -version` reports (0 when it cannot be read)."""
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False).stderr
    except (OSError, subprocess.TimeoutExpired):
        return 0
    found = re.search(r'version "(\d+)', out)
    return int(found[1]) if found else 0


def find_java() -> str:
    """The java executable TorchServe's launcher will run (JAVA_HOME/bin/java, else `java` on PATH), checked
    to be Java 17 or newer; JavaNotFoundError saying how to install it otherwise."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = os.path.join(java_home, "bin", "java")
        found = candidate if os.access(candidate, os.X_OK) else None
    else:
        found = shutil.which("java")
    if not found:
        raise JavaNotFoundError(JAVA_MISSING)
    major = _java_major(found)
    if major < JAVA_MAJOR:
        raise JavaNotFoundError(f"{found} is Java {major}: TorchServe needs Java {JAVA_MAJOR}. Install: {JAVA_INSTALL}")
    return found


def read_pid_file(path: Path) -> int | None:
    """The pid written first in a pid file, None when the file is missing or holds no pid."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def alive(proc: psutil.Process) -> bool:
    """True while the process exists and is not a zombie (orphans may not be reaped promptly)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def wait_gone(procs: Sequence[psutil.Process], timeout_s: float) -> bool:
    """Poll until none of `procs` is alive; False if some still are after `timeout_s`."""
    return bool(poll_until(lambda: not any(alive(p) for p in procs), timeout_s))


def signal_all(procs: Sequence[psutil.Process], kill: bool) -> None:
    """SIGTERM (or SIGKILL with `kill`) each process of `procs` that is still alive."""
    for proc in procs:
        if alive(proc):
            with contextlib.suppress(psutil.Error):
                proc.kill() if kill else proc.terminate()


def stop_family(procs: Sequence[psutil.Process], grace_s: float) -> None:
    """Wait `grace_s` for `procs` to exit, then SIGTERM, then SIGKILL what is left (10 s each)."""
    if not wait_gone(procs, grace_s):
        signal_all(procs, kill=False)
        if not wait_gone(procs, 10):
            signal_all(procs, kill=True)
            wait_gone(procs, 10)


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


def free_ports() -> Ports:
    """Five distinct ports, bindable on 127.0.0.1 now, drawn at random from FREE_PORT_RANGE.

    Not from the kernel's ephemeral range (bind to port 0): the kernel hands recently released ports out
    again, so two servers started back to back collided, and outgoing connections take their local ports
    from that range. Ports already handed out by this process are never reused.
    """
    rng = random.Random()
    chosen: list[int] = []
    while len(chosen) < 5:
        port = rng.randrange(*FREE_PORT_RANGE)
        if port in _HANDED_OUT or port in chosen or not bindable(port):
            continue
        chosen.append(port)
    _HANDED_OUT.update(chosen)
    return Ports(*chosen)


def tail(path: Path, lines: int) -> str:
    """The last `lines` lines of a text file, or a note that it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"({path} not readable)"
    return "\n".join(text.splitlines()[-lines:])
