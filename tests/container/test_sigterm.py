"""SIGTERM under load, on a container of its own (started by scripts/image-serve.sh like the session's one, which
no test stops). Once 8 clients have had answers, `scripts/image-stop.sh` (podman stop: SIGTERM, then SIGKILL
after 40 s) while they keep sending; like a load balancer, they stop sending new requests once the container
reports unhealthy (which it does as soon as the signal arrives). Every request sent must be answered, right,
and the container must exit 0 within the grace period."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.container.conftest import Engine, Served, serve_container
from toolkit.paths import BUILD_MODELS, ROOT
from toolkit.polling import poll_until

CLIENTS = 8
LOADED_ANSWERS = 5 * CLIENTS  # answers before the signal: every client is in its request loop
LOADED_TIMEOUT_S = 60
UNHEALTHY_TIMEOUT_S = 15  # from SIGTERM to the health check saying no
GRACE_S = 40  # image-stop.sh's stop timeout; the drain deadline inside is 20 s
SAMPLES = BUILD_MODELS / "mnist" / "samples"


@dataclass
class Load:
    """CLIENTS threads, each POSTing `body` to `url` in a loop until `stop_sending` is set. `results`: one
    (sent, answered (monotonic s), HTTP status or -1, body or error) per request."""

    url: str
    headers: dict[str, str]
    body: bytes
    stop_sending: threading.Event = field(default_factory=threading.Event)
    results: list[tuple[float, float, int, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: list[threading.Thread] = field(default_factory=list)

    def _client(self) -> None:
        with requests.Session() as session:
            while not self.stop_sending.is_set():
                sent = time.monotonic()
                try:
                    r = session.post(self.url, data=self.body, headers=self.headers, timeout=60)
                    outcome = (r.status_code, r.text)
                except requests.RequestException as exc:
                    outcome = (-1, repr(exc))
                with self.lock:
                    self.results.append((sent, time.monotonic(), *outcome))

    def start(self) -> None:
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(CLIENTS)]
        for t in self.threads:
            t.start()

    def answered(self) -> int:
        with self.lock:
            return len(self.results)

    def stop(self) -> None:
        """Stop sending and wait for the requests in flight."""
        self.stop_sending.set()
        for t in self.threads:
            t.join(timeout=90)


@dataclass
class Stopped:
    signalled: float  # monotonic s of SIGTERM
    unhealthy_after_s: float
    exited_after_s: float
    exit_status: int
    output: str  # image-stop.sh's


def stop_under_load(engine: Engine, served: Served, load: Load) -> Stopped:
    """image-stop.sh while `load` keeps sending until the health check says no; then wait for the exit."""
    signalled = time.monotonic()
    env = {**os.environ, **engine.env, "CONTAINER_NAME": served.name, "STOP_TIMEOUT_S": str(GRACE_S)}
    stopper = subprocess.Popen(["bash", "scripts/image-stop.sh"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    unhealthy = poll_until(lambda: engine.run("healthcheck", "run", served.name, check=False).returncode != 0,
                           UNHEALTHY_TIMEOUT_S, every_s=0.1)
    unhealthy_after_s = time.monotonic() - signalled
    load.stop()
    out, _ = stopper.communicate(timeout=GRACE_S + 60)
    assert unhealthy, f"still healthy {UNHEALTHY_TIMEOUT_S} s after SIGTERM\n{out}"
    return Stopped(signalled, unhealthy_after_s, time.monotonic() - signalled, stopper.returncode, out)


@pytest.mark.usefixtures("image")
def test_sigterm_under_load_answers_everything_and_exits_0(engine: Engine, tmp_path: Path) -> None:
    with serve_container(engine, tmp_path / "image_run") as served:
        load = Load(f"{served.url(served.inference)}/predictions/mnist",
                    {"Authorization": f"Bearer {served.keys().inference}", "Content-Type": "image/png"},
                    (SAMPLES / "3.png").read_bytes())
        load.start()
        try:
            loaded = poll_until(lambda: load.answered() >= LOADED_ANSWERS, LOADED_TIMEOUT_S, every_s=0.05)
            assert loaded, f"{load.answered()} answers in {LOADED_TIMEOUT_S} s, before any signal: {load.results[:3]}"
            stopped = stop_under_load(engine, served, load)
        finally:
            load.stop()

    print(f"{len(load.results)} requests; unhealthy {stopped.unhealthy_after_s:.1f} s and exit "
          f"{stopped.exited_after_s:.1f} s after SIGTERM\n{stopped.output}")
    want = json.loads((SAMPLES / "expected.json").read_text())["3.png"]
    want = want[0] if isinstance(want, list) else want
    failures = [r for r in load.results if r[2] != 200 or json.loads(r[3]).get("predicted_label") != want]
    in_flight = [r for r in load.results if r[0] < stopped.signalled < r[1]]
    after = [r for r in load.results if r[0] >= stopped.signalled]
    assert not failures, failures[:5]
    assert in_flight, "no request was in flight at SIGTERM"
    assert stopped.exit_status == 0, stopped.output  # the container's exit status
    assert stopped.exited_after_s < GRACE_S, stopped.output
    print(f"in flight at SIGTERM: {len(in_flight)}, sent after it (before unhealthy): {len(after)}")
