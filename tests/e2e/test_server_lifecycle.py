"""LocalServer lifecycle against real TorchServe processes: isolation of side-by-side servers, loopback-only
listeners, stop semantics, and the refusals that happen before any JVM starts.

Two servers (A, B) run for this module, each with a throwaway echo archive so that worker processes exist.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.e2e.conftest import CONFIG, START_TIMEOUT_S, build_archive
from toolkit import server as server_mod
from toolkit.client.rest import InferenceClient
from toolkit.errors import ServerError
from toolkit.server import (
    JAVA_MISSING,
    PID_FILE_NAME,
    JavaNotFoundError,
    LocalServer,
    PortInUseError,
    Ports,
    ServerAlreadyRunningError,
    read_properties,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalServer, LocalServer]]:
    """Servers A and B: separate run dirs and free ports, one echo worker each; both stopped at the end."""
    root = tmp_path_factory.mktemp("lifecycle")
    store = root / "store"
    store.mkdir()
    archive = build_archive(root, store, "echo")
    a = LocalServer(CONFIG, root / "run_a", store, [archive])
    b = LocalServer(CONFIG, root / "run_b", store, [archive])
    try:
        a.start()
        b.start()
        a.wait_healthy(START_TIMEOUT_S)
        b.wait_healthy(START_TIMEOUT_S)
        yield a, b
    finally:
        b.stop()
        a.stop()


def config_ports(srv: LocalServer) -> Ports:
    return Ports.from_properties(read_properties(srv.config_path))


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
    assert a.keys.inference != b.keys.inference
    assert a.keys.management != b.keys.management
    for srv in pair:
        assert psutil.Process(srv.frontend_pid).cwd() == str(srv.run_dir)
        assert srv.worker_pids("echo"), "each server runs its own echo worker"
        with srv.inference_client() as client:
            assert client.predict("echo", b"hi", "text/plain") == (200, {"echo": "hi", "version": "1.0"})
    assert not set(a.worker_pids("echo")) & set(b.worker_pids("echo"))


def test_one_servers_key_is_refused_by_the_other(pair: tuple[LocalServer, LocalServer]) -> None:
    a, b = pair
    with InferenceClient(b.urls.inference, a.keys.inference) as client, pytest.raises(ServerError) as info:
        client.ping()
    assert (info.value.status, info.value.kind) == (400, "InvalidKeyException")


def test_every_listener_is_loopback(pair: tuple[LocalServer, LocalServer]) -> None:
    for srv in pair:
        listeners = listening_ips_and_ports(srv.frontend_pid)
        assert {as_ipv4(ip) for ip, _ in listeners} == {"127.0.0.1"}, listeners
        assert sorted(port for _, port in listeners) == sorted(config_ports(srv).all())
        for child in psutil.Process(srv.frontend_pid).children(recursive=True):
            assert listening_ips_and_ports(child.pid) == [], f"worker {child.pid} listens on TCP"


def test_second_start_in_same_run_dir_is_refused(pair: tuple[LocalServer, LocalServer]) -> None:
    a, _ = pair
    again = LocalServer(CONFIG, a.run_dir, a.model_store)
    with pytest.raises(ServerAlreadyRunningError, match=str(a.frontend_pid)):
        again.start()
    assert a.is_running()


def test_stopping_one_leaves_the_other_healthy(pair: tuple[LocalServer, LocalServer]) -> None:
    a, b = pair
    frontend = psutil.Process(b.frontend_pid)
    family = [frontend, *frontend.children(recursive=True)]
    assert len(family) >= 2, "B should have its frontend and at least one worker"
    b.stop()
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in family)
    assert not b.is_running()
    assert not (b.run_dir / PID_FILE_NAME).exists()
    assert not b.key_file.exists()
    assert a.is_running()
    assert a.health_problem() is None
    with a.inference_client() as client:
        assert client.ping() == "Healthy"
        assert client.predict("echo", b"still here", "text/plain")[0] == 200
    b.stop()  # stopping a stopped server is a no-op


def test_missing_java_is_reported_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no java
    store = tmp_path / "store"
    store.mkdir()
    with pytest.raises(JavaNotFoundError) as info:
        LocalServer(CONFIG, tmp_path / "run", store).start()
    assert str(info.value) == JAVA_MISSING
    assert JAVA_MISSING == (
        "java not found: TorchServe needs Java 17. Install it with: apt-get install -y openjdk-17-jre-headless"
    )
    rc = server_mod.main(["start", "--run-dir", str(tmp_path / "run"), "--model-store", str(store)])
    assert rc == 1
    assert capsys.readouterr().err == JAVA_MISSING + "\n"


def test_port_in_use_is_refused_before_launch(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "config.properties"
        config.write_text(CONFIG.read_text().replace("http://127.0.0.1:8080", f"http://127.0.0.1:{port}"))
        store = tmp_path / "store"
        store.mkdir()
        srv = LocalServer(config, tmp_path / "run", store, ports="config")
        with pytest.raises(PortInUseError, match=f"port {port} "):
            srv.start()
    assert srv.frontend_pid is None
    assert not srv.is_running()


def test_rewritten_config_changes_only_addresses_ports_and_store(pair: tuple[LocalServer, LocalServer]) -> None:
    a, _ = pair
    original, rewritten = read_properties(CONFIG), read_properties(a.config_path)
    changed = {key for key in original if original[key] != rewritten.get(key)}
    assert changed <= {
        "inference_address", "management_address", "metrics_address", "grpc_inference_port",
        "grpc_management_port", "model_store",
    }  # fmt: skip
    assert rewritten["model_store"] == str(a.model_store)
    assert rewritten["disable_token_authorization"] == "false"
    assert rewritten["allowed_urls"] == original["allowed_urls"]
