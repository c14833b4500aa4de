"""The container entrypoint's settings (toolkit.server.container): read once from the environment, a bad value
refused on one line naming the variable and the value; and the config its server writes (all interfaces)."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolkit.errors import SettingsError
from toolkit.paths import MODEL_STORE
from toolkit.properties import Ports, read_properties
from toolkit.server import container
from toolkit.server.container import CONTAINER_DRAIN_DEADLINE_S, ContainerSettings, container_server
from toolkit.server.drain import DRAIN_QUIET_S


def test_defaults_when_nothing_is_set() -> None:
    settings = ContainerSettings.from_env({"PATH": "/usr/bin"})
    assert settings == ContainerSettings.model_validate({})
    assert (settings.run_dir, settings.metrics_bind) == (Path("/app/run"), "127.0.0.1")
    assert (settings.drain_deadline_s, settings.drain_quiet_s) == (CONTAINER_DRAIN_DEADLINE_S, DRAIN_QUIET_S) == (20, 2)


def test_values_come_from_the_environment() -> None:
    env = {"TS_RUN_DIR": "/srv/run", "TS_METRICS_BIND": "0.0.0.0", "TS_DRAIN_DEADLINE_S": "45",
           "TS_DRAIN_QUIET_S": "0.5"}  # fmt: skip
    settings = ContainerSettings.from_env(env)
    assert (settings.run_dir, settings.metrics_bind, settings.drain_deadline_s, settings.drain_quiet_s) == (
        Path("/srv/run"), "0.0.0.0", 45.0, 0.5)
    with pytest.raises(ValueError, match="frozen"):
        settings.drain_deadline_s = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [("TS_DRAIN_DEADLINE_S", "2O", "Input should be a valid number, unable to parse string as a number"),
     ("TS_DRAIN_DEADLINE_S", "-1", "Input should be greater than or equal to 0"),
     ("TS_DRAIN_QUIET_S", "inf", "Input should be a finite number"),
     ("TS_METRICS_BIND", "", "String should have at least 1 character"),
     ("TS_RUN_DIR", " ", "Value error, an empty path names no folder")],
)  # fmt: skip
def test_a_bad_value_is_refused_naming_variable_and_value(name: str, value: str, why: str) -> None:
    with pytest.raises(SettingsError) as info:
        ContainerSettings.from_env({name: value})
    assert str(info.value) == f"{name}={value!r} refused: {why} (unset {name} for its default)"


def test_the_entrypoint_exits_2_on_one_line_for_a_bad_value(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TS_DRAIN_DEADLINE_S", "2O")
    assert container.main(["health"]) == 2
    assert capsys.readouterr().err == (
        "error: TS_DRAIN_DEADLINE_S='2O' refused: Input should be a valid number, unable to parse string as a "
        "number (unset TS_DRAIN_DEADLINE_S for its default)\n")


def test_the_container_server_writes_its_listeners_once_on_every_interface(tmp_path: Path) -> None:
    settings = ContainerSettings.from_env({"TS_RUN_DIR": str(tmp_path / "run"), "TS_METRICS_BIND": "10.0.0.7"})
    server = container_server(settings)
    assert server.run_dir == (tmp_path / "run").resolve()
    assert server.models == sorted(p.name for p in MODEL_STORE.glob("*.mar"))
    server.prepare(server.config, server.config_overrides())
    props = read_properties(server.config_path)
    ports = Ports.from_config(server.config)
    assert props["inference_address"] == f"http://0.0.0.0:{ports.inference}"
    assert props["management_address"] == f"http://0.0.0.0:{ports.management}"
    assert props["metrics_address"] == f"http://10.0.0.7:{ports.metrics}"
    assert (props["grpc_inference_address"], props["grpc_management_address"]) == ("0.0.0.0", "0.0.0.0")
    assert props["model_store"] == str(MODEL_STORE)
    assert server.urls.inference == f"http://127.0.0.1:{ports.inference}", "the toolkit itself talks over loopback"
