"""End-to-end fixtures: real TorchServe 0.12 servers shared by the whole session, started by
toolkit.server.LocalServer (helpers the tests import live in tests/e2e/_helpers.py, not here).

- `server`: every shipped archive of model_store/, each pinned to 1 worker (a copy of the archive whose
  model-config says minWorkers = maxWorkers = 1, in the session's own store; the shipped ones ask for 2).
- `echo_server`: throwaway function-handler archives only: echo 1.0 and streamer 1.0 loaded at start,
  echo 2.0 and broken 1.0 (fails to load) in its store. Shared by the auth/management, gRPC and lifecycle
  tests; a test that registers something there unregisters it in a `finally`.

Each runs in a pytest temp dir (its TMPDIR, TEMP and working directory, so its pid file, key file, logs and
worker sockets are its own) on five free loopback ports, and is stopped (by its own pid file) when the
session ends. Tests that stop or break a server start their own.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e._helpers import (
    CONFIG,
    FAILING_HANDLER,
    START_TIMEOUT_S,
    STREAM_HANDLER,
    build_archive,
    one_worker_copy,
    store_archives,
)
from toolkit.client.auth import Keys
from toolkit.client.rest import InferenceClient, ManagementClient
from toolkit.process import free_ports
from toolkit.server.local import LocalServer


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """A ready TorchServe with every model_store/*.mar loaded, 1 worker each; fails (saying to run
    `make archive`) when there are none."""
    archives = store_archives()
    if not archives:
        pytest.fail("model_store/ has no .mar archives: run `make archive` first (make test does)")
    root = tmp_path_factory.mktemp("ts_session")
    store = root / "store"
    store.mkdir()
    for archive in archives:
        one_worker_copy(archive, store / archive.name)
    srv = LocalServer(root / "run", CONFIG, store, [p.name for p in archives], ports=free_ports())
    with srv.running(START_TIMEOUT_S):
        yield srv


@pytest.fixture(scope="session")
def echo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """echo 1.0 and streamer 1.0 loaded at start; echo_2.0.mar and broken_1.0.mar in its store."""
    root = tmp_path_factory.mktemp("ts_echo")
    store = root / "store"
    store.mkdir()
    loaded = [build_archive(root, store, "echo", "1.0"), build_archive(root, store, "streamer", "1.0", STREAM_HANDLER)]
    build_archive(root, store, "echo", "2.0")
    build_archive(root, store, "broken", "1.0", FAILING_HANDLER)
    srv = LocalServer(root / "run", CONFIG, store, loaded, ports=free_ports())
    with srv.running(START_TIMEOUT_S):
        yield srv


@pytest.fixture(scope="session")
def keys(server: LocalServer) -> Keys:
    """The session server's inference and management keys."""
    return server.read_keys()


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
