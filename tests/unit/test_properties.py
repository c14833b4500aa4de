"""toolkit.properties: the project-relative files a config.properties names made absolute (rooted_paths), and
the listener ports and addresses (Ports)."""

from __future__ import annotations

from toolkit.paths import CONFIG_PROPERTIES, ROOT
from toolkit.properties import LOG_CONFIG_FLAG, Ports, read_properties, rooted_paths


def test_relative_metrics_config_and_log4j_file_are_rooted_other_jvm_args_kept() -> None:
    props = {"metrics_config": "config/metrics.yaml",
             "vmargs": f"-Xmx2g {LOG_CONFIG_FLAG}config/log4j2.xml -XX:TieredStopAtLevel=1"}
    assert rooted_paths(props, "/app") == {
        "metrics_config": "/app/config/metrics.yaml",
        "vmargs": f"-Xmx2g {LOG_CONFIG_FLAG}/app/config/log4j2.xml -XX:TieredStopAtLevel=1",
    }


def test_absolute_paths_uris_and_configs_without_them_need_no_override() -> None:
    absolute = {"metrics_config": "/etc/m.yaml", "vmargs": f"{LOG_CONFIG_FLAG}file:///etc/l.xml"}
    assert rooted_paths(absolute, "/app") == {}
    assert rooted_paths({"vmargs": "-Xmx1g"}, "/app") == {}
    assert rooted_paths({}, "/app") == {}


def test_the_project_config_names_files_that_exist_under_the_root() -> None:
    rooted = rooted_paths(read_properties(CONFIG_PROPERTIES), ROOT)
    log_config = next(a for a in rooted["vmargs"].split() if a.startswith(LOG_CONFIG_FLAG))[len(LOG_CONFIG_FLAG):]
    for path in (rooted["metrics_config"], log_config):
        assert path.startswith(str(ROOT)) and (ROOT / path).is_file(), path


def test_torchserve_s_own_ports_are_those_of_a_config_naming_none() -> None:
    assert Ports.default().all() == [8080, 8081, 8082, 7070, 7071]
    assert Ports.from_properties({}) == Ports.default()
    named = {"inference_address": "http://127.0.0.1:9080", "grpc_management_port": "9071"}
    assert Ports.from_properties(named).all() == [9080, 8081, 8082, 7070, 9071]


def test_listener_overrides_of_the_local_server_the_container_and_a_pod() -> None:
    ports = Ports(1, 2, 3, 4, 5)
    assert ports.overrides() == {
        "inference_address": "http://127.0.0.1:1", "management_address": "http://127.0.0.1:2",
        "metrics_address": "http://127.0.0.1:3", "grpc_inference_address": "127.0.0.1", "grpc_inference_port": "4",
        "grpc_management_address": "127.0.0.1", "grpc_management_port": "5",
    }  # fmt: skip
    container = ports.overrides(bind="0.0.0.0", metrics_bind="127.0.0.1")
    assert [container[k] for k in ("inference_address", "management_address", "metrics_address")] == [
        "http://0.0.0.0:1", "http://0.0.0.0:2", "http://127.0.0.1:3"]
    assert (container["grpc_inference_address"], container["grpc_management_address"]) == ("0.0.0.0", "0.0.0.0")
    pod = ports.overrides(bind="0.0.0.0", management_bind="127.0.0.1")
    assert [pod[k] for k in ("inference_address", "management_address", "metrics_address")] == [
        "http://0.0.0.0:1", "http://127.0.0.1:2", "http://0.0.0.0:3"]
    assert (pod["grpc_inference_address"], pod["grpc_management_address"]) == ("0.0.0.0", "127.0.0.1")
    # every override is a key TorchServe reads back as the same ports
    assert Ports.from_properties(pod) == Ports.from_properties(container) == ports
