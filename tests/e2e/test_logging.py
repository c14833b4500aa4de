"""The frontend's logging (config/log4j2.xml via config.properties `vmargs`) on a real TorchServe: one access
line per request, no DEBUG lines and nothing per request on the console. TorchServe's built-in config wrote ~7
ts_log lines and 4 stdout lines per request."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e._helpers import wait_for
from tests.heldout import post_all
from tests.paths import BUILD, require_built
from toolkit.server.local import LocalServer

REQUESTS = 40


def size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0


def new_lines(path: Path, offset: int) -> list[str]:
    with path.open("rb") as log:
        log.seek(offset)
        return log.read().decode("utf-8", "replace").splitlines()


def test_each_request_is_logged_once_in_the_access_log_and_nowhere_per_request_else(server: LocalServer) -> None:
    samples = BUILD / "mnist" / "samples"
    name = sorted(json.loads(require_built(samples / "expected.json", "make models").read_text()))[0]
    logs = {n: server.log_dir / n for n in ("access_log.log", "ts_log.log", "stdout.log")}
    before = {n: size(p) for n, p in logs.items()}
    answers = post_all(server.urls.inference, server.read_keys().inference, "/predictions/mnist",
                       [((samples / name).read_bytes(), "image/png")] * REQUESTS, 8)
    assert [status for status, _ in answers] == [200] * REQUESTS

    def access_lines() -> list[str] | None:
        lines = [x for x in new_lines(logs["access_log.log"], before["access_log.log"]) if "/predictions/mnist" in x]
        return lines if len(lines) >= REQUESTS else None

    assert len(wait_for(access_lines, 10)) == REQUESTS
    ts_lines = new_lines(logs["ts_log.log"], before["ts_log.log"])
    assert not [x for x in ts_lines if "[DEBUG]" in x or "ACCESS_LOG" in x], ts_lines[:5]
    assert len(ts_lines) <= REQUESTS, f"{len(ts_lines)} ts_log lines for {REQUESTS} requests"
    assert new_lines(logs["stdout.log"], before["stdout.log"]) == []
