"""The Grafana dashboard file (deploy/grafana/dashboard.json) and the Prometheus config, offline: importable,
datasource as a variable, every query well-formed once Grafana's variables are filled in. That every panel
returns data from a real Prometheus is tests/e2e/test_prometheus.py."""

from __future__ import annotations

import yaml

from toolkit.monitor import dashboard
from toolkit.monitor.prometheus import JOB, PROMETHEUS_YML, scrape_config


def test_dashboard_is_importable_with_the_datasource_as_a_variable():
    board = dashboard.load()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["model"]["allValue"] == dashboard.ALL_MODELS
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"]), panel["title"]
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])


def test_every_panel_query_has_its_variables_filled_in():
    shown = dashboard.panels(dashboard.load())
    titles = " ".join(p.title.lower() for p in shown)
    for wanted in ("outcome", "error ratio", "batch fill", "decode", "inference", "queue", "workers", "memory"):
        assert wanted in titles, wanted
    for panel in shown:
        for target in panel.targets:
            expr = dashboard.expand(target.expr, model="mnist", rate_interval="30s")
            assert "$" not in expr.replace('"$1"', ""), expr
            assert expr.count("(") == expr.count(")"), expr


def test_legend_format_takes_the_series_labels():
    assert dashboard.legend("{{model_name}} {{outcome}}", {"model_name": "mnist", "outcome": "ok"}) == "mnist ok"
    assert dashboard.legend("", {"a": "1"}) == "a=1"


def test_the_scrape_config_points_the_torchserve_job_at_the_given_targets():
    config = yaml.safe_load(scrape_config(PROMETHEUS_YML.read_text(), ["127.0.0.1:23456"], interval_s=1))
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == JOB]
    assert job["static_configs"] == [{"targets": ["127.0.0.1:23456"]}]
    assert config["global"]["scrape_interval"] == "1s"
    shipped = yaml.safe_load(PROMETHEUS_YML.read_text())
    assert shipped["scrape_configs"][0]["static_configs"] == [{"targets": ["127.0.0.1:8082"]}]
