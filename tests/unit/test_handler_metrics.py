"""Handler metrics (handlers/metrics.py) through TorchServe's own metrics cache, and config/metrics.yaml; and an
engine's own sink (`context.metrics_sink`).

The handler runs through TorchServe's Context with the worker's metrics cache (`MetricsCacheYamlImpl` of
config/metrics.yaml); the `[METRICS]` lines it writes are what the frontend parses, so they are read back here.
"""

from __future__ import annotations

import gc
import logging
import re
import warnings
from pathlib import Path

import pytest
import torch
import ts
import yaml
from ts.metrics.metric_cache_yaml_impl import MetricsCacheYamlImpl

from handlers import metrics as hm
from tests.served import digit_pixels, png_bytes
from toolkit.paths import ROOT

METRICS_YAML = ROOT / "config" / "metrics.yaml"
TS_DEFAULT = Path(ts.__file__).parent / "configs" / "metrics.yaml"
LINE = re.compile(r"\[METRICS\](?P<name>\w+)\.(?P<unit>\w+):(?P<value>[0-9.e-]+)"
                  r"\|#(?P<dims>[^|]*)\|#type:(?P<type>\w+)")


def declared(path: Path) -> dict[tuple[str, str, str], list[str]]:
    """(section, type, name) -> dimensions, for every metric of a TorchServe metrics config."""
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {
        (section, kind, spec["name"]): list(spec["dimensions"])
        for section in ("ts_metrics", "model_metrics")
        for kind, specs in (config.get(section) or {}).items()
        for spec in specs
    }


def test_metrics_yaml_keeps_every_torchserve_default():
    ours, default = declared(METRICS_YAML), declared(TS_DEFAULT)
    missing = {key: dims for key, dims in default.items() if ours.get(key) != dims}
    assert not missing, f"config/metrics.yaml lost or changed TorchServe defaults: {missing}"


def test_metrics_yaml_declares_every_handler_metric_with_its_type_and_dimensions():
    ours = declared(METRICS_YAML)
    for spec in hm.SPECS:
        assert ours.get(("model_metrics", spec.type.value, spec.name)) == list(spec.dimensions), spec
    assert ("model_metrics", "gauge", hm.HANDLER_TIME) in ours


@pytest.fixture
def metered(image_handler):
    """The image handler with the worker's metrics cache of config/metrics.yaml, as TorchServe sets it up."""
    with warnings.catch_warnings():  # TorchServe's cache opens the YAML without closing it
        warnings.simplefilter("ignore", ResourceWarning)
        cache = MetricsCacheYamlImpl(config_file_path=str(METRICS_YAML))
        gc.collect()
    cache.initialize_cache()
    cache.model_name = image_handler.context.model_name
    image_handler.context.metrics = cache
    image_handler.handler.handler_metrics = None
    return image_handler


def metric_lines(caplog, batch) -> list[dict]:
    """Run `batch()` and return the [METRICS] lines written meanwhile, parsed."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ts.metrics"):
        batch()
    found = [LINE.search(record.getMessage()) for record in caplog.records]
    return [{**m.groupdict(), "value": float(m["value"])} for m in found if m]


def values(lines: list[dict], name: str) -> list[tuple[str, float]]:
    return [(line["dims"], line["value"]) for line in lines if line["name"] == name]


def test_one_count_per_request_by_outcome_and_one_observation_per_batch(metered, caplog):
    good = png_bytes(digit_pixels(0))
    many = {"image": [digit_pixels(1).tolist(), digit_pixels(2).tolist()]}
    bodies = [good, b"{", {"image": [0] * 28}, good, {"image": [digit_pixels(0).tolist()] * 9}, many]
    lines = metric_lines(caplog, lambda: metered.batch(*bodies))
    dims = "model_name:test,model_version:1.0"
    assert sorted(values(lines, hm.REQUESTS)) == sorted([
        (f"{dims},outcome:ok", 3.0), (f"{dims},outcome:decode_error", 1.0),
        (f"{dims},outcome:validation_error", 1.0), (f"{dims},outcome:payload_too_large", 1.0),
    ])
    assert values(lines, hm.BATCH_REQUESTS) == [(dims, 6.0)]
    assert values(lines, hm.BATCH_INPUTS) == [(dims, 4.0)]
    assert values(lines, hm.BATCH_FILL) == [(dims, 0.75)]  # 6 requests, batchSize 8
    (_, decode_ms), (_, inference_ms), (_, handler_ms) = (
        *values(lines, hm.DECODE_MS), *values(lines, hm.INFERENCE_MS), *values(lines, hm.HANDLER_TIME))
    assert decode_ms > 0 and inference_ms > 0 and decode_ms + inference_ms <= handler_ms + 0.01  # rounding
    assert [line["type"] for line in lines if line["name"] == hm.REQUESTS] == ["COUNTER"] * 4
    assert {line["type"] for line in lines if line["name"].startswith("handler_batch")} == {"HISTOGRAM"}
    assert values(lines, hm.HANDLER_TIME)[0][0] == "ModelName:test,Level:Model"


def test_a_batch_refused_whole_has_no_inference_observation(metered, caplog):
    lines = metric_lines(caplog, lambda: metered.batch(b"", b"{"))
    assert [v for _, v in values(lines, hm.REQUESTS)] == [2.0]
    assert [v for _, v in values(lines, hm.BATCH_INPUTS)] == [0.0]
    assert values(lines, hm.INFERENCE_MS) == []


def test_a_failed_batch_counts_each_request_as_server_error(metered, caplog):
    def broken(batch: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("device lost")

    metered.handler.model = broken
    good = png_bytes(digit_pixels(0))
    answers = []
    lines = metric_lines(caplog, lambda: answers.extend(metered.batch(good, b"{", good)))
    assert [answer.status for answer in answers] == [503] * 3
    assert values(lines, hm.REQUESTS) == [("model_name:test,model_version:1.0,outcome:server_error", 3.0)]
    assert values(lines, hm.BATCH_REQUESTS) == []


def test_without_a_sink_nothing_is_written(image_handler, caplog):
    assert image_handler.context.metrics is None  # no TorchServe frontend in this process
    lines = metric_lines(caplog, lambda: image_handler.batch(png_bytes(digit_pixels(0)), b"{"))
    assert lines == []


class Recorded:
    """An engine's sink (the Ray engine's is toolkit.engines.ray.metrics.RaySink): records what it receives."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, float, tuple[str, ...]]] = []

    def emit(self, spec: hm.MetricSpec, value: float, labels) -> None:
        self.seen.append((spec.name, value, tuple(labels)))


def test_an_engine_sink_on_the_context_receives_the_metrics_instead_of_torchserve(image_handler):
    sink = Recorded()
    setattr(image_handler.context, hm.METRICS_SINK_ATTRIBUTE, sink)
    image_handler.handler.handler_metrics = None
    image_handler.batch(png_bytes(digit_pixels(0)), b"{", {"image": [0] * 28})
    counts = sorted((labels[2], value) for name, value, labels in sink.seen if name == hm.REQUESTS)
    assert counts == [("decode_error", 1), ("ok", 1), ("validation_error", 1)]
    assert {name for name, _, _ in sink.seen} == {spec.name for spec in hm.SPECS}
    assert all(labels[:2] == ("test", "1.0") for name, _, labels in sink.seen if name != hm.HANDLER_TIME)
