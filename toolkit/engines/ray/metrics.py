"""The handler metrics sink of the Ray engine: Ray's own metrics (`ray.util.metrics`), which each node's metrics
agent exports on its Prometheus endpoint (`--metrics-export-port`), as TorchServe's frontend exports them on
8082. The handlers write the same names, labels and values through it (`handlers.metrics.MetricsSink`).

Ray prefixes every application metric with `ray_` and exports a counter with the suffix `_total`: the counter
`handler_requests` appears as `ray_handler_requests_total{model_name, model_version, outcome}`, the histograms as
`ray_handler_decode_milliseconds_bucket` etc. Histogram buckets are chosen per unit (TorchServe's frontend has
only the Prometheus Java client's defaults).
"""

from __future__ import annotations

from collections.abc import Sequence

from ts.metrics.metric_type_enum import MetricTypes

from handlers.metrics import MetricSpec

# Bucket boundaries per unit of handlers.metrics.SPECS.
BOUNDARIES: dict[str, list[float]] = {
    "ms": [0.25, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000],
    "requests": [1, 2, 4, 8, 16, 32, 64, 128, 256],
    "inputs": [1, 2, 4, 8, 16, 32, 64, 128, 256, 1024],
    "ratio": [0.125, 0.25, 0.5, 0.75, 0.9, 1.0],
}


def ray_name(spec: MetricSpec) -> str:
    """The name a metric is registered under in Ray: a counter without `_total` (Ray's exporter adds it)."""
    return spec.name.removesuffix("_total") if spec.type == MetricTypes.COUNTER else spec.name


class RaySink:
    """`handlers.metrics.MetricsSink` on Ray's metrics; one per replica, metrics created on first use."""

    def __init__(self) -> None:
        self.metrics: dict[str, object] = {}

    def _metric(self, spec: MetricSpec):
        metric = self.metrics.get(spec.name)
        if metric is None:
            from ray.util import metrics  # a replica process has Ray; importing the engine does not start it

            name, tags = ray_name(spec), tuple(spec.dimensions)
            if spec.type == MetricTypes.COUNTER:
                metric = metrics.Counter(name, f"{spec.name} ({spec.unit})", tags)
            elif spec.type == MetricTypes.HISTOGRAM:
                metric = metrics.Histogram(name, f"{spec.name} ({spec.unit})", BOUNDARIES[spec.unit], tags)
            else:
                metric = metrics.Gauge(name, f"{spec.name} ({spec.unit})", tags)
            self.metrics[spec.name] = metric
        return metric

    def emit(self, spec: MetricSpec, value: float, labels: Sequence[str]) -> None:
        tags = dict(zip(spec.dimensions, map(str, labels), strict=True))
        metric = self._metric(spec)
        if spec.type == MetricTypes.COUNTER:
            metric.inc(value, tags)
        elif spec.type == MetricTypes.HISTOGRAM:
            metric.observe(value, tags)
        else:
            metric.set(value, tags)
