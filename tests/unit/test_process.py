"""toolkit.process on real processes and sockets: a process owned through its pid file, stopping a family,
and the free-port allocator."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from toolkit.errors import PortInUseError
from toolkit.process import (
    FREE_PORT_RANGE,
    Fingerprint,
    OwnedProcess,
    bindable,
    check_ports_free,
    free_ports,
    port_block,
    read_pid_file,
    stop_family,
    tail,
)

# A child that sleeps until it is signalled; `marker` makes its command line ours alone.
SLEEPER = "import time; time.sleep(60)"
# The same, deaf to SIGTERM: it says so on stdout once the handler is in place.
DEAF = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('deaf', flush=True); time.sleep(60)"


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    """A running child with a unique marker argument, reaped (killed if need be) afterwards."""
    marker = f"marker-{uuid.uuid4().hex}"
    proc = subprocess.Popen([sys.executable, "-c", SLEEPER, marker], cwd=tmp_path)
    yield proc, marker
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


def test_the_pid_file_process_is_ours_only_with_our_fingerprint(tmp_path: Path, sleeper) -> None:
    proc, marker = sleeper
    pid_file = tmp_path / "x.pid"
    pid_file.write_text(f"{proc.pid}\n")
    owned = OwnedProcess.from_pid_file(pid_file, Fingerprint((marker,), cwd=tmp_path))
    assert owned.pid == proc.pid
    live = owned.live()
    assert live is not None and live.pid == proc.pid
    # the same pid with another command line or working directory: a reused pid, not ours
    assert OwnedProcess(proc.pid, Fingerprint(("marker-of-someone-else",))).live() is None
    assert OwnedProcess(proc.pid, Fingerprint((marker,), cwd=tmp_path / "elsewhere")).live() is None
    assert OwnedProcess.from_pid_file(tmp_path / "missing.pid", Fingerprint((marker,))).live() is None


def test_a_stale_pid_file_names_no_live_process(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)  # fmt: skip
    pid_file = tmp_path / "x.pid"
    pid_file.write_text(done.stdout)
    assert read_pid_file(pid_file) == int(done.stdout)
    assert OwnedProcess.from_pid_file(pid_file, Fingerprint(("-c",))).live() is None
    for junk in ("", "not-a-pid", "\n"):
        pid_file.write_text(junk)
        assert read_pid_file(pid_file) is None


def test_stop_terminates_the_process_and_its_children(tmp_path: Path) -> None:
    marker = f"marker-{uuid.uuid4().hex}"
    parent_code = (f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {SLEEPER!r}, '{marker}']);"
                   " print('started', flush=True); time.sleep(60)")  # fmt: skip
    parent = subprocess.Popen([sys.executable, "-c", parent_code, marker], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None and parent.stdout.readline() == "started\n"
        family = [psutil.Process(parent.pid), *psutil.Process(parent.pid).children(recursive=True)]
        assert len(family) == 2
        owned = OwnedProcess(parent.pid, Fingerprint((marker,)))
        asked: list[int] = []
        # the parent is asked (SIGTERM); its orphaned child is left to stop_family's SIGTERM after the grace
        assert owned.stop(0.5, ask=lambda proc: (asked.append(proc.pid), proc.terminate())) is True
        assert asked == [parent.pid]
        assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in family)
        assert owned.live() is None
        assert owned.stop(10) is False, "nothing left to stop"
    finally:
        if parent.poll() is None:
            parent.kill()
        parent.wait(10)
        parent.stdout.close()


def test_a_process_deaf_to_sigterm_is_killed(tmp_path: Path) -> None:
    deaf = subprocess.Popen([sys.executable, "-c", DEAF], stdout=subprocess.PIPE, text=True)
    try:
        assert deaf.stdout is not None and deaf.stdout.readline() == "deaf\n"
        proc = psutil.Process(deaf.pid)
        start = time.monotonic()
        stop_family([proc], grace_s=0.2, signal_wait_s=0.5)
        took_s = time.monotonic() - start
        assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
        assert 0.7 <= took_s < 5, "the grace and the SIGTERM wait passed, then SIGKILL"
    finally:
        if deaf.poll() is None:
            deaf.kill()
        deaf.wait(10)
        deaf.stdout.close()


def test_free_ports_are_distinct_bindable_in_range_and_never_handed_out_twice() -> None:
    low, high = FREE_PORT_RANGE
    seen: set[int] = set()
    for _ in range(20):
        ports = free_ports().all()
        assert len(set(ports)) == 5 and all(low <= p < high for p in ports)
        assert all(bindable(p) for p in ports)
        assert not seen.intersection(ports)
        seen.update(ports)


def test_a_port_block_is_consecutive_and_free() -> None:
    block = port_block(70)
    assert block == list(range(block[0], block[0] + 70))
    assert FREE_PORT_RANGE[0] <= block[0] and block[-1] < FREE_PORT_RANGE[1]
    check_ports_free(block)
    assert not set(block).intersection(port_block(70)), "a block is never handed out twice"


def test_a_taken_port_is_refused_by_number() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert not bindable(port)
        with pytest.raises(PortInUseError, match=f"^port {port} on 127.0.0.1 is already in use$"):
            check_ports_free([port])


def test_tail_gives_the_last_lines_or_says_the_file_is_unreadable(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(10)))
    assert tail(log, 2) == "line 8\nline 9"
    assert tail(tmp_path / "nope.log", 2) == f"({tmp_path / 'nope.log'} not readable)"
