"""SIGTERM under load (runs last: it stops the session's container). `scripts/image-stop.sh` (podman stop:
SIGTERM, then SIGKILL after 40 s) while 8 clients keep sending; like a load balancer, they stop sending new
requests once the container reports unhealthy (which it does as soon as the signal arrives). Every request
sent must be answered, right, and the container must exit 0 within the grace period."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time

import requests

from tests.container.conftest import Engine, Served
from toolkit.paths import BUILD_MODELS, ROOT

CLIENTS = 8
GRACE_S = 40  # image-stop.sh's stop timeout; the drain deadline inside is 20 s


def test_sigterm_under_load_answers_everything_and_exits_0(engine: Engine, served: Served) -> None:
    png = (BUILD_MODELS / "mnist" / "samples" / "3.png").read_bytes()
    url = f"{served.url(served.inference)}/predictions/mnist"
    headers = {"Authorization": f"Bearer {served.keys().inference}", "Content-Type": "image/png"}
    stop_sending = threading.Event()
    results: list[tuple[float, float, int, str]] = []  # (sent, answered, status, body or error)
    lock = threading.Lock()

    def client() -> None:
        with requests.Session() as session:
            while not stop_sending.is_set():
                sent = time.monotonic()
                try:
                    r = session.post(url, data=png, headers=headers, timeout=60)
                    outcome = (r.status_code, r.text)
                except requests.RequestException as exc:
                    outcome = (-1, repr(exc))
                with lock:
                    results.append((sent, time.monotonic(), *outcome))

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    time.sleep(3)  # load established
    signalled = time.monotonic()
    env = {**os.environ, **engine.env, "CONTAINER_NAME": served.name, "STOP_TIMEOUT_S": str(GRACE_S)}
    stopper = subprocess.Popen(["bash", "scripts/image-stop.sh"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    # the "load balancer": keep sending until the health check says no
    while engine.run("healthcheck", "run", served.name, check=False).returncode == 0:
        assert time.monotonic() - signalled < 15, "still healthy 15 s after SIGTERM"
    unhealthy_after = time.monotonic() - signalled
    stop_sending.set()
    for t in threads:
        t.join(timeout=90)
    out, _ = stopper.communicate(timeout=GRACE_S + 60)
    exited_after = time.monotonic() - signalled

    print(f"{len(results)} requests; unhealthy {unhealthy_after:.1f} s and exit {exited_after:.1f} s after "
          f"SIGTERM\n{out}")
    want = json.loads((BUILD_MODELS / "mnist" / "samples" / "expected.json").read_text())["3.png"]
    want = want[0] if isinstance(want, list) else want
    failures = [r for r in results if r[2] != 200 or json.loads(r[3]).get("predicted_label") != want]
    in_flight = [r for r in results if r[0] < signalled < r[1]]
    after = [r for r in results if r[0] >= signalled]
    assert not failures, failures[:5]
    assert in_flight, "no request was in flight at SIGTERM"
    assert stopper.returncode == 0, out  # the container's exit status
    assert exited_after < GRACE_S, out
    print(f"in flight at SIGTERM: {len(in_flight)}, sent after it (before unhealthy): {len(after)}")
