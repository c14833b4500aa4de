"""End-to-end fixtures: a real TorchServe 0.12 per test session, started by toolkit.server.LocalServer.

The session server runs in a pytest temp dir (its TMPDIR, TEMP and working directory, so its pid file,
key file, logs and worker sockets are its own) on five free loopback ports, with every archive of
model_store/ loaded at start. It is stopped (by its own pid file) when the session ends.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from toolkit.client.auth import Keys
from toolkit.client.rest import InferenceClient, ManagementClient
from toolkit.server.local import LocalServer

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "config" / "config.properties"
MODEL_STORE = REPO / "model_store"
START_TIMEOUT_S = 240.0  # JVM start plus one worker per model loading torch, on a busy 2-core machine

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


def store_archives() -> list[Path]:
    """The default-version archives of model_store/ (`<name>.mar`; `<name>_v<version>.mar` files are left
    for the version tests to register)."""
    return sorted(p for p in MODEL_STORE.glob("*.mar") if not re.search(r"_v[0-9][^/]*\.mar$", p.name))


# A handler whose model load fails (TorchServe calls handle(None, context) when a worker loads the model).
FAILING_HANDLER = """
def handle(data, context):
    raise RuntimeError("this model cannot load")
"""


def build_archive(work: Path, store: Path, name: str, version: str = "1.0", source: str = ECHO_HANDLER) -> str:
    """Write a throwaway function-handler archive `<name>_<version>.mar` running `source` into `store`;
    returns its file name."""
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


@contextmanager
def serving(srv: LocalServer) -> Iterator[LocalServer]:
    """Start `srv`, wait until it is healthy (START_TIMEOUT_S), and stop it afterwards whatever happens."""
    srv.start()
    try:
        srv.wait_healthy(START_TIMEOUT_S)
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """A healthy TorchServe with every model_store/*.mar loaded; skipped (loudly) when there are none."""
    archives = store_archives()
    if not archives:
        pytest.skip(
            "E2E TESTS SKIPPED: model_store/ has no .mar archives. Build them with `make models archive` "
            "(`make test` / `make test-e2e` do this first)."
        )
    run_dir = tmp_path_factory.mktemp("ts_session")
    srv = LocalServer(CONFIG, run_dir, MODEL_STORE, [p.name for p in archives], ports="free")
    with serving(srv):
        yield srv


@pytest.fixture(scope="session")
def keys(server: LocalServer) -> Keys:
    """The session server's inference and management keys."""
    return server.keys


@pytest.fixture(scope="session")
def inference(server: LocalServer) -> Iterator[InferenceClient]:
    """Inference client of the session server, with the right key."""
    with server.inference_client() as client:
        yield client


@pytest.fixture(scope="session")
def management(server: LocalServer) -> Iterator[ManagementClient]:
    """Management client of the session server, with the right key."""
    with server.management_client() as client:
        yield client


@pytest.fixture(scope="session")
def model_names(management: ManagementClient) -> list[str]:
    """Names of the models registered on the session server at start (at least one)."""
    names = sorted(m["modelName"] for m in management.models())
    assert names, "the session server was started with archives but lists no model"
    return names
