"""Helpers of the e2e tests (tests import from here, never from conftest.py): the project config and store,
throwaway function-handler archives, one-worker copies of the shipped archives, concurrent sends, error-body
checks, archive variants, worker memory and log reading. Load runs go through toolkit.bench.aioclient (the
project's one asyncio HTTP client); waits through toolkit.polling. Times are `time.monotonic()` seconds; sizes
are bytes."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import textwrap
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
import yaml

from toolkit.archive.__main__ import main as archive_main
from toolkit.bench.aioclient import Outcome, PostRequest, post, session
from toolkit.client.auth import auth_header
from toolkit.paths import CONFIG_PROPERTIES as CONFIG
from toolkit.paths import MODEL_STORE
from toolkit.polling import poll_until
from toolkit.server.diagnose import worker_lines

__all__ = ["CONFIG", "MODEL_STORE", "Outcome", "PostRequest"]

START_TIMEOUT_S = 240.0  # JVM start plus one worker per model loading torch, on a busy 2-core machine
ERROR_KEYS = {"code", "type", "message"}
LARGE_BODY = 1 << 20

# --- throwaway archives -----------------------------------------------------------------------------------

# A minimal function handler: answers each request with its body and the model version as JSON; the body
# "bad" gets our handlers' error answer (a 400 over REST; over gRPC the call is OK and the body is the error).
ECHO_HANDLER = """
import json

def handle(data, context):
    if data is None:
        return None
    version = context.manifest["model"]["modelVersion"]
    answers = []
    for idx, row in enumerate(data):
        body = row.get("data") or row.get("body") or b""  # TorchServe decodes text and JSON bodies
        if isinstance(body, (bytes, bytearray)):
            body = body.decode()
        text = body if isinstance(body, str) else json.dumps(body)
        if text == "bad":
            context.set_response_status(400, "Bad Request", idx)
            answers.append(json.dumps({"code": 400, "type": "decode_error", "message": "cannot decode 'bad'"}))
        else:
            answers.append(json.dumps({"echo": text, "version": version}))
    return answers
"""

# Streams: one intermediate answer per request, then the final one.
STREAM_HANDLER = """
import json
from ts.handler_utils.utils import send_intermediate_predict_response

def handle(data, context):
    if data is None:
        return None
    first = [json.dumps({"part": 1}) for _ in data]
    send_intermediate_predict_response(first, context.request_ids, "Intermediate Prediction success", 200, context)
    return [json.dumps({"part": 2, "echo": bytes(row.get("data") or b"").decode()}) for row in data]
"""

# A handler whose model load fails (TorchServe calls handle(None, context) when a worker loads the model).
FAILING_HANDLER = """
def handle(data, context):
    raise RuntimeError("this model cannot load")
"""


def build_archive(work: Path, store: Path, name: str, version: str = "1.0", source: str = ECHO_HANDLER) -> str:
    """Write a throwaway function-handler archive `<name>_<version>.mar` of model `name` running `source` into
    `store` (torch-model-archiver, no model-config: 1 worker); returns its file name."""
    src = work / f"src_{name}_{version}"
    src.mkdir(parents=True)
    handler = src / f"{name}_handler.py"
    handler.write_text(textwrap.dedent(source))
    archiver = Path(sys.executable).parent / "torch-model-archiver"
    cmd = [str(archiver), "--model-name", name, "--version", version, "--handler", str(handler)]
    subprocess.run([*cmd, "--export-path", str(src), "--force"], check=True, capture_output=True)
    file_name = f"{name}_{version}.mar"
    (src / f"{name}.mar").rename(store / file_name)
    return file_name


def store_archives() -> list[Path]:
    """The default-version archives of model_store/ (`<name>.mar`; `<name>_v<version>.mar` files are left
    out)."""
    return sorted(p for p in MODEL_STORE.glob("*.mar") if not re.search(r"_v[0-9][^/]*\.mar$", p.name))


def one_worker_config(text: str) -> str:
    """A model-config.yaml with minWorkers and maxWorkers 1, everything else kept."""
    config = yaml.safe_load(text)
    config.update(minWorkers=1, maxWorkers=1)
    return yaml.safe_dump(config, sort_keys=False)


def one_worker_copy(src: Path, dst: Path) -> Path:
    """A copy of a shipped archive whose model-config says 1 worker (minWorkers and maxWorkers). The archive's
    minWorkers wins over `initial_workers` and over the --models start (TorchServe issue 2851), so the count
    can only be pinned in the archive itself; the manifest, handler, weights and every other key are kept."""
    with zipfile.ZipFile(src) as zin:
        config_file = json.loads(zin.read("MAR-INF/MANIFEST.json"))["model"]["configFile"]

    def change(name: str, data: bytes) -> bytes:
        return one_worker_config(data.decode("utf-8")).encode("utf-8") if name == config_file else data

    return rewrite_mar(src, dst, change)


# --- sends ----------------------------------------------------------------------------------------------


def _post_blocking(base_url: str, key: str, req: PostRequest, timeout_s: float, index: int) -> Outcome:
    """A large body goes through `requests` in a thread: when TorchServe refuses it (413) before reading it
    all, an aiohttp transport can stay 'closing' with unsent data past the event loop's end (ResourceWarning);
    requests closes its socket."""
    headers = {**auth_header(key), **({"Content-Type": req.content_type} if req.content_type else {})}
    with requests.Session() as http:
        resp = http.post(f"{base_url}{req.path}", data=req.body, headers=headers, timeout=timeout_s)
        return Outcome(index, 0.0, 0.0, resp.status_code, resp.content)


async def _send_together(base_url: str, key: str, reqs: list[PostRequest], timeout_s: float) -> list[Outcome]:
    start = time.monotonic()
    async with session(key, len(reqs) + 1, timeout_s) as http:  # one connection each: all in flight at once
        calls = [
            asyncio.to_thread(_post_blocking, base_url, key, r, timeout_s, i)
            if len(r.body) > LARGE_BODY
            else post(http, base_url, r, start, i)
            for i, r in enumerate(reqs)
        ]
        return list(await asyncio.gather(*calls))


def send_together(base_url: str, key: str, reqs: list[PostRequest], timeout_s: float = 60.0) -> list[Outcome]:
    """POST every request at once (one connection each, asyncio.gather); outcomes in request order. A request
    without an HTTP answer fails the test."""
    outcomes = asyncio.run(_send_together(base_url, key, reqs, timeout_s))
    cut = [(r.path, o.error) for r, o in zip(reqs, outcomes, strict=True) if o.status is None]
    assert not cut, f"requests without an HTTP answer: {cut}"
    return outcomes


def send_one(base_url: str, key: str, req: PostRequest, timeout_s: float = 60.0) -> Outcome:
    """POST one request on its own."""
    return send_together(base_url, key, [req], timeout_s)[0]


def assert_error(answer: Outcome, status: int, kind: str | None, text: str) -> None:
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


# --- archives ------------------------------------------------------------------------------------------


def build_variant(base_yaml: Path, name: str, work: Path, store: Path, top: dict, handler: dict) -> Path:
    """A copy of a model YAML named `name` with TorchServe keys `top` and `handler:` keys `handler`
    overridden, archived by toolkit.archive into `store` (no preflight). Returns the .mar path."""
    data = yaml.safe_load(base_yaml.read_text(encoding="utf-8"))
    data.update(top)
    if "module" in handler:  # a handler of a test's own instead of the library's
        data["handler"].pop("name")
    data["handler"].update(handler)
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    rc = archive_main(["--config", str(path), "--store", str(store), "--no-preflight"])
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
    """toolkit.polling.poll_until, failing the test (AssertionError) when `timeout_s` passes first."""
    value = poll_until(probe, timeout_s, poll_s)
    assert value, f"condition not met within {timeout_s:g} s"
    return value


BATCH_LINE = re.compile(r"^batch: requests=(?P<requests>\d+) inputs=(?P<inputs>\d+) rejected=(?P<rejected>\d+)")


def batch_lines(log_dir: Path, offset: int, model: str, version: str = "1.0") -> list[dict[str, int]]:
    """The `batch: requests=.. inputs=.. rejected=..` lines handlers.base logged for `model` `version` after
    byte `offset` of the server's model log (toolkit.server.diagnose.worker_lines), as dicts of ints."""
    found = [m for line in worker_lines(log_dir, model, version, offset) if (m := BATCH_LINE.match(line))]
    return [{k: int(m[k]) for k in ("requests", "inputs", "rejected")} for m in found]
