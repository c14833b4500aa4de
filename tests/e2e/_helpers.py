"""Helpers of the reliability e2e tests: concurrent sends, bounded load, error-body checks, archive variants,
worker memory and log reading. Times are `time.monotonic()` seconds; sizes are bytes."""

from __future__ import annotations

import asyncio
import json
import re
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import requests
import yaml

from toolkit import archive
from toolkit.client.auth import auth_header

ERROR_KEYS = {"code", "type", "message"}
LARGE_BODY = 1 << 20


@dataclass(frozen=True)
class Req:
    """One inference request: path under the inference URL (`/predictions/mnist`), body, content type."""

    path: str
    body: bytes
    content_type: str | None = "application/json"


@dataclass(frozen=True)
class Answer:
    """One HTTP answer: status and raw body."""

    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def _post(session: aiohttp.ClientSession, base_url: str, req: Req) -> Answer:
    headers = {"Content-Type": req.content_type} if req.content_type else {}
    async with session.post(f"{base_url}{req.path}", data=req.body, headers=headers) as resp:
        return Answer(resp.status, await resp.read())


def _post_blocking(base_url: str, key: str, req: Req, timeout_s: float) -> Answer:
    """A large body goes through `requests` in a thread: when TorchServe refuses it (413) before reading it
    all, an aiohttp transport can stay 'closing' with unsent data past the event loop's end (ResourceWarning);
    requests closes its socket."""
    headers = {**auth_header(key), **({"Content-Type": req.content_type} if req.content_type else {})}
    with requests.Session() as http:
        resp = http.post(f"{base_url}{req.path}", data=req.body, headers=headers, timeout=timeout_s)
        return Answer(resp.status_code, resp.content)


async def _send_together(base_url: str, key: str, reqs: list[Req], timeout_s: float) -> list[Answer]:
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    connector = aiohttp.TCPConnector(limit=len(reqs) + 1)  # one connection each: all in flight at once
    async with aiohttp.ClientSession(headers=auth_header(key), timeout=timeout, connector=connector) as session:
        calls = [
            asyncio.to_thread(_post_blocking, base_url, key, r, timeout_s)
            if len(r.body) > LARGE_BODY
            else _post(session, base_url, r)
            for r in reqs
        ]
        return list(await asyncio.gather(*calls))


def send_together(base_url: str, key: str, reqs: list[Req], timeout_s: float = 60.0) -> list[Answer]:
    """POST every request at once (one connection each, asyncio.gather); answers in request order."""
    return asyncio.run(_send_together(base_url, key, reqs, timeout_s))


def send_one(base_url: str, key: str, req: Req, timeout_s: float = 60.0) -> Answer:
    """POST one request on its own."""
    return send_together(base_url, key, [req], timeout_s)[0]


def assert_error(answer: Answer, status: int, kind: str | None, text: str) -> None:
    """`answer` is `status` with exactly the JSON error body {code, type, message}: code == status, the
    given type, `text` in the message, and no Python traceback anywhere in the body."""
    raw = answer.body.decode("utf-8", "replace")
    assert answer.status == status, f"expected {status}, got {answer.status}: {raw[:300]}"
    assert "Traceback" not in raw and 'File "' not in raw, raw
    body = answer.json()
    assert set(body) == ERROR_KEYS, body
    assert body["code"] == status, body
    if kind is not None:
        assert body["type"] == kind, body
    assert text in body["message"], body


# --- bounded load --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One request of a load run: when it was sent and answered (s since the run's start), its HTTP
    status (None when no HTTP answer came) and the error message or client exception name."""

    sent_at: float
    done_at: float
    status: int | None
    detail: str


def _detail(status: int, body: bytes) -> str:
    if status == 200:
        return ""
    try:
        return str(json.loads(body).get("message", ""))
    except (ValueError, AttributeError):
        return body[:200].decode("utf-8", "replace")


async def _one(session: aiohttp.ClientSession, url: str, body: bytes, start: float) -> Outcome:
    sent = time.monotonic() - start
    try:
        async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
            raw = await resp.read()
            return Outcome(sent, time.monotonic() - start, resp.status, _detail(resp.status, raw))
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Outcome(sent, time.monotonic() - start, None, type(exc).__name__)


@dataclass
class LoadPlan:
    """A closed loop: `concurrency` clients send `body` to `url` until `total` requests were sent or
    `should_stop()` says so; each request times out after `timeout_s`. `on_outcome` sees every outcome."""

    url: str
    key: str
    body: bytes
    total: int
    concurrency: int = 16
    timeout_s: float = 30.0
    on_outcome: Callable[[Outcome, float], None] | None = None
    should_stop: Callable[[], bool] | None = None


async def run_load(plan: LoadPlan) -> list[Outcome]:
    """Run a LoadPlan; returns one Outcome per request sent."""
    outcomes: list[Outcome] = []
    sent = 0
    start = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=plan.timeout_s)
    connector = aiohttp.TCPConnector(limit=plan.concurrency)
    async with aiohttp.ClientSession(headers=auth_header(plan.key), timeout=timeout, connector=connector) as session:

        async def client() -> None:
            nonlocal sent
            while sent < plan.total and not (plan.should_stop and plan.should_stop()):
                sent += 1
                outcome = await _one(session, plan.url, plan.body, start)
                outcomes.append(outcome)
                if plan.on_outcome:
                    plan.on_outcome(outcome, start)

        await asyncio.gather(*(client() for _ in range(plan.concurrency)))
    return outcomes


# --- archives ------------------------------------------------------------------------------------------


def build_variant(base_yaml: Path, name: str, work: Path, store: Path, top: dict, handler: dict) -> Path:
    """A copy of a model YAML named `name` with TorchServe keys `top` and `handler:` keys `handler`
    overridden, archived by toolkit.archive into `store` (no preflight). Returns the .mar path."""
    data = yaml.safe_load(base_yaml.read_text(encoding="utf-8"))
    data.update(top)
    data["handler"].update(handler)
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    rc = archive.main(["--config", str(path), "--store", str(store), "--no-preflight"])
    assert rc == 0, f"toolkit.archive failed for {path}"
    return store / f"{name}.mar"


def rewrite_mar(src: Path, dst: Path, change: Callable[[str, bytes], bytes | None]) -> Path:
    """Copy an archive member by member through `change(name, data)`; None drops the member."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = change(info.filename, zin.read(info.filename))
            if data is not None:
                zout.writestr(info.filename, data)
    return dst


# --- processes and logs --------------------------------------------------------------------------------


def peak_rss(pid: int) -> int:
    """The process's peak resident set size so far (VmHWM of /proc/<pid>/status), bytes. Linux only."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def wait_for(probe: Callable[[], Any], timeout_s: float, poll_s: float = 0.2) -> Any:
    """Poll `probe()` until it returns something truthy (returned); AssertionError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"condition not met within {timeout_s:g} s"
        time.sleep(poll_s)


BATCH_LINE = re.compile(
    r"W-\d+-(?P<model>.+?)_(?P<version>[^_]+)-stdout MODEL_LOG - "
    r"batch: requests=(?P<requests>\d+) inputs=(?P<inputs>\d+) rejected=(?P<rejected>\d+)"
)


def batch_lines(model_log: Path, offset: int, model: str) -> list[dict[str, int]]:
    """The `batch: requests=.. inputs=.. rejected=..` lines handlers.base logged for `model` after byte
    `offset` of model_log.log, as dicts of ints."""
    with model_log.open("rb") as fh:
        fh.seek(offset)
        text = fh.read().decode("utf-8", "replace")
    found = [m for m in BATCH_LINE.finditer(text) if m["model"] == model]
    return [{k: int(m[k]) for k in ("requests", "inputs", "rejected")} for m in found]
