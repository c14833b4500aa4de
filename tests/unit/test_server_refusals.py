"""Refusals of toolkit.server that happen before any JVM starts: no (or too old a) java, a port in use."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from toolkit.errors import JavaNotFoundError, PortInUseError
from toolkit.paths import CONFIG_PROPERTIES
from toolkit.server import __main__ as server_cli
from toolkit.server import local
from toolkit.server.java import JAVA_INSTALL, JAVA_MISSING, find_java
from toolkit.server.local import LocalServer


def test_missing_java_is_reported_with_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no java
    assert JAVA_MISSING.startswith("java not found: TorchServe needs Java 17.")
    assert JAVA_MISSING.endswith(f"Install it with: {JAVA_INSTALL}")
    assert JAVA_INSTALL == "apt-get install -y openjdk-17-jre-headless"
    with pytest.raises(JavaNotFoundError) as found:
        find_java()
    assert str(found.value) == JAVA_MISSING
    store = tmp_path / "store"
    store.mkdir()
    with pytest.raises(JavaNotFoundError) as started:
        LocalServer(tmp_path / "run", CONFIG_PROPERTIES, store).start()
    assert str(started.value) == JAVA_MISSING
    assert not (tmp_path / "run").exists(), "nothing is written before java is found"
    rc = server_cli.main(["start", "--run-dir", str(tmp_path / "run"), "--model-store", str(store), "--free-ports"])
    assert rc == 1
    assert capsys.readouterr().err == f"error: {JAVA_MISSING}\n"


def test_too_old_java_is_refused_with_its_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    java = tmp_path / "bin" / "java"
    java.parent.mkdir()
    java.write_text("#!/bin/sh\necho 'openjdk version \"11.0.2\" 2019-01-15' >&2\n")
    java.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    with pytest.raises(JavaNotFoundError) as info:
        find_java()
    assert str(info.value) == f"{java} is Java 11: TorchServe needs Java 17. Install: {JAVA_INSTALL}"


def test_port_in_use_is_refused_before_launch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "find_java", lambda: "java")  # the port check alone, whether java is here or not
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "config.properties"
        text = CONFIG_PROPERTIES.read_text()
        assert "http://127.0.0.1:8080" in text
        config.write_text(text.replace("http://127.0.0.1:8080", f"http://127.0.0.1:{port}"))
        store = tmp_path / "store"
        store.mkdir()
        srv = LocalServer(tmp_path / "run", config, store)  # ports=None: the config's own
        assert srv.ports.inference == port
        with pytest.raises(PortInUseError, match=f"port {port} "):
            srv.start()
    assert srv.frontend_pid is None
    assert not srv.is_running()
    assert not (tmp_path / "run" / "logs" / "stdout.log").exists(), "the launcher never ran"
