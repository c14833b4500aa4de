"""toolkit.properties.rooted_paths: the project-relative files a config.properties names, made absolute."""

from __future__ import annotations

from toolkit.paths import CONFIG_PROPERTIES, ROOT
from toolkit.properties import LOG_CONFIG_FLAG, read_properties, rooted_paths


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
