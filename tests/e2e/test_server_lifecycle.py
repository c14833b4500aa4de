"""LocalServer lifecycle against real TorchServe processes: isolation of side-by-side servers, loopback-only
listeners and stop semantics. (The refusals that happen before any JVM starts are in
tests/unit/test_server_refusals.py.)

The side-by-side checks use the session's two shared servers (tests/e2e/conftest.py): the echo server (A) and
the model server (B); both keep running. The stop test starts and stops a server of its own.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import psutil
import pytest

from tests.e2e._helpers import CONFIG, START_TIMEOUT_S
from toolkit.client.management import all_versions
from toolkit.client.rest import InferenceClient
from toolkit.errors import ServerAlreadyRunningError, ServerError
from toolkit.paths import ROOT
from toolkit.process import alive, free_ports
from toolkit.properties import LOG_CONFIG_FLAG, Ports, read_properties
from toolkit.server.local import PID_FILE_NAME, LocalServer


@pytest.fixture
def pair(echo_server: LocalServer, server: LocalServer) -> tuple[LocalServer, LocalServer]:
    """Servers A (echo) and B (the real models): separate run dirs, free ports, their own workers."""
    return echo_server, server


@pytest.fixture
def doomed(echo_server: LocalServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """A server of this test only (echo 1.0 from the echo server's store), for the stop test to stop."""
    srv = LocalServer(tmp_path_factory.mktemp("doomed"), CONFIG, echo_server.model_store, ["echo_1.0.mar"],
                      ports=free_ports())
    with srv.running(START_TIMEOUT_S):
        yield srv


def config_ports(srv: LocalServer) -> Ports:
    return Ports.from_properties(read_properties(srv.config_path))


def worker_pids_of(srv: LocalServer) -> set[int]:
    """Pids of every worker of every registered model version, from the management API."""
    with srv.management_client(timeout_s=30) as mgmt:
        return {int(w["pid"]) for desc in all_versions(mgmt) for w in desc.get("workers", [])}


def listening_ips_and_ports(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every listening TCP socket of a process."""
    conns = psutil.Process(pid).net_connections(kind="inet")
    return [(c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN]


def as_ipv4(ip: str) -> str:
    """An IPv4-mapped IPv6 address (Java's dual-stack sockets: ::ffff:127.0.0.1) as plain IPv4."""
    addr = ipaddress.ip_address(ip)
    mapped = getattr(addr, "ipv4_mapped", None)
    return str(mapped) if mapped is not None else str(addr)


def test_side_by_side_servers_are_separate(pair: tuple[LocalServer, LocalServer]) -> None:
    a, b = pair
    assert a.frontend_pid != b.frontend_pid
    assert {a.frontend_pid, b.frontend_pid} == {int((srv.run_dir / PID_FILE_NAME).read_text()) for srv in pair}
    assert not set(config_ports(a).all()) & set(config_ports(b).all())
    a_keys, b_keys = a.read_keys(), b.read_keys()
    assert a_keys.inference != b_keys.inference
    assert a_keys.management != b_keys.management
    for srv in pair:
        assert psutil.Process(srv.frontend_pid).cwd() == str(srv.run_dir)
        children = {p.pid for p in psutil.Process(srv.frontend_pid).children(recursive=True)}
        assert worker_pids_of(srv), "each server runs its own workers"
        assert worker_pids_of(srv) <= children, "a server's workers are its own frontend's children"
    assert not worker_pids_of(a) & worker_pids_of(b)
    with a.inference_client() as client:
        assert client.predict("echo", b"hi", "text/plain") == (200, {"echo": "hi", "version": "1.0"})
    assert b.health_problem() is None


def test_one_servers_key_is_refused_by_the_other(pair: tuple[LocalServer, LocalServer]) -> None:
    a, b = pair
    with InferenceClient(b.urls.inference, a.read_keys().inference) as client, pytest.raises(ServerError) as info:
        client.ping()
    assert (info.value.status, info.value.kind) == (400, "InvalidKeyException")


def test_every_listener_is_loopback(pair: tuple[LocalServer, LocalServer]) -> None:
    for srv in pair:
        listeners = listening_ips_and_ports(srv.frontend_pid)
        assert {as_ipv4(ip) for ip, _ in listeners} == {"127.0.0.1"}, listeners
        assert sorted(port for _, port in listeners) == sorted(config_ports(srv).all())
        for child in psutil.Process(srv.frontend_pid).children(recursive=True):
            assert listening_ips_and_ports(child.pid) == [], f"worker {child.pid} listens on TCP"


def test_second_start_in_same_run_dir_is_refused(echo_server: LocalServer) -> None:
    a = echo_server
    again = LocalServer(a.run_dir, CONFIG, a.model_store, ports=free_ports())
    with pytest.raises(ServerAlreadyRunningError, match=str(a.frontend_pid)):
        again.start()
    assert a.is_running()


def test_stopping_one_leaves_the_others_ready(doomed: LocalServer, pair: tuple[LocalServer, LocalServer]) -> None:
    frontend = psutil.Process(doomed.frontend_pid)
    family = [frontend, *frontend.children(recursive=True)]
    assert len(family) >= 2, "the server should have its frontend and at least one worker"
    doomed.stop()
    assert not any(alive(p) for p in family)
    assert not doomed.is_running()
    assert not (doomed.run_dir / PID_FILE_NAME).exists()
    assert not doomed.key_file.exists()
    for srv in pair:
        assert srv.is_running()
        assert srv.health_problem() is None
    with pair[0].inference_client() as client:
        assert client.ping() == "Healthy"
        assert client.predict("echo", b"still here", "text/plain")[0] == 200
    doomed.stop()  # stopping a stopped server is a no-op
    assert not doomed.is_running()


def test_rewritten_config_changes_only_addresses_ports_store_and_file_paths(echo_server: LocalServer) -> None:
    a = echo_server
    original, rewritten = read_properties(CONFIG), read_properties(a.config_path)
    changed = {key for key in original if original[key] != rewritten.get(key)}
    assert changed <= {
        "inference_address", "management_address", "metrics_address", "grpc_inference_address",
        "grpc_inference_port", "grpc_management_address", "grpc_management_port", "model_store",
        "metrics_config", "vmargs",
    }
    # TorchServe resolves a relative metrics_config, and log4j its configuration file, against the working
    # directory (the run dir): both are rooted at the project.
    assert rewritten["metrics_config"] == str(ROOT / original["metrics_config"])
    assert f"{LOG_CONFIG_FLAG}{ROOT}/config/log4j2.xml" in rewritten["vmargs"].split()
    assert {key: rewritten[key] for key in ("inference_address", "management_address", "metrics_address")} == {
        "inference_address": a.urls.inference, "management_address": a.urls.management,
        "metrics_address": a.urls.metrics,
    }
    assert (rewritten["grpc_inference_port"], rewritten["grpc_management_port"]) == (
        str(a.ports.grpc_inference), str(a.ports.grpc_management))
    assert rewritten["model_store"] == str(a.model_store)
    assert rewritten["disable_token_authorization"] == "false"
    assert rewritten["allowed_urls"] == original["allowed_urls"]
