"""Handler metrics: what each batch did, written to the metrics sink of the engine that batches.

One `HandlerMetrics` per worker; `handlers.base.ServingHandler.handle` calls `batch` once per batch (or `failed`
when the batch raised). The sink (`MetricsSink`) belongs to the engine: under TorchServe it is its metrics cache
(`TorchServeSink`): each metric is one `[METRICS]` line on the worker's stdout that the frontend parses and, in
Prometheus mode, exposes on the metrics listener (8082), but ONLY when config/metrics.yaml declares it under
`model_metrics` with these names and dimensions (values are sent by position, in that order; Prometheus labels
`model_name`, `model_version` (+ `outcome`), and `Hostname`, which the frontend adds). The Ray engine sets its
own sink (`context.metrics_sink`: Ray's metrics, exported by Ray's Prometheus endpoint) before the first batch.

    handler_requests_total          counter    one per request, label outcome: ok, or the request's ClientError
                                               type (decode_error, validation_error, payload_too_large), or
                                               server_error when the whole batch failed (TorchServe sends 503)
    handler_batch_requests          histogram  requests per batch
    handler_batch_inputs            histogram  inputs (rows) per batch sent through the model, 0 if none
    handler_batch_fill_ratio        histogram  requests per batch / batchSize, in (0, 1]
    handler_decode_milliseconds     histogram  preprocess time per batch (decode, validate, collate)
    handler_inference_milliseconds  histogram  inference time per batch (not observed when it was skipped)
    HandlerTime                     gauge      TorchServe's own: handle() time of the last batch, ms (its
                                               BaseHandler.handle writes it; ours replaces that method)

TorchServe 0.12 builds every histogram with the Prometheus Java client's default buckets (0.005 ... 10, +Inf)
and offers no way to change them, so: times are sent in ms (ours fall in 0.005-10 ms; slower batches land in
+Inf), batch fill also as a ratio in (0, 1]; `_sum / _count` gives exact means of all of them.

Without a sink (no `context.metrics_sink`, `context.metrics` None) nothing is written. Handlers never import the
toolkit; this module needs only TorchServe's `ts.metrics`.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ts.metrics.metric_cache_errors import MetricsCacheKeyError
from ts.metrics.metric_type_enum import MetricTypes

from handlers.errors import ClientError
from handlers.manifest import model_version

logger = logging.getLogger(__name__)

OK = "ok"
SERVER_ERROR = "server_error"

REQUESTS = "handler_requests_total"
BATCH_REQUESTS = "handler_batch_requests"
BATCH_INPUTS = "handler_batch_inputs"
BATCH_FILL = "handler_batch_fill_ratio"
DECODE_MS = "handler_decode_milliseconds"
INFERENCE_MS = "handler_inference_milliseconds"
HANDLER_TIME = "HandlerTime"  # TorchServe's default gauge (dimensions ModelName, Level)

MODEL_DIMS = ("model_name", "model_version")


@dataclass(frozen=True)
class MetricSpec:
    """One metric as config/metrics.yaml declares it."""

    name: str
    type: MetricTypes
    unit: str
    dimensions: tuple[str, ...] = MODEL_DIMS


SPECS: tuple[MetricSpec, ...] = (
    MetricSpec(REQUESTS, MetricTypes.COUNTER, "requests", (*MODEL_DIMS, "outcome")),
    MetricSpec(BATCH_REQUESTS, MetricTypes.HISTOGRAM, "requests"),
    MetricSpec(BATCH_INPUTS, MetricTypes.HISTOGRAM, "inputs"),
    MetricSpec(BATCH_FILL, MetricTypes.HISTOGRAM, "ratio"),
    MetricSpec(DECODE_MS, MetricTypes.HISTOGRAM, "ms"),
    MetricSpec(INFERENCE_MS, MetricTypes.HISTOGRAM, "ms"),
    MetricSpec(HANDLER_TIME, MetricTypes.GAUGE, "ms", ("ModelName", "Level")),
)
SPEC = {spec.name: spec for spec in SPECS}
# The Context attribute an engine that batches outside TorchServe sets to its own MetricsSink.
METRICS_SINK_ATTRIBUTE = "metrics_sink"


def outcome(request: object) -> str:
    """`ok` for a decoded request, else its ClientError's type."""
    return request.error_type if isinstance(request, ClientError) else OK


class MetricsSink(Protocol):
    """Where an engine's handler metrics go: `emit` records `value` for the metric `spec` with the label values
    `labels` (in the order of `spec.dimensions`): a counter adds it, a histogram observes it, a gauge sets it."""

    def emit(self, spec: MetricSpec, value: float, labels: Sequence[str]) -> None: ...


class TorchServeSink:
    """TorchServe's metrics cache (`context.metrics`): one `[METRICS]` line per value on the worker's stdout,
    parsed by the frontend. Metrics missing from the cache (a metrics config without ours) are added, so writing
    never fails; the frontend still drops them."""

    def __init__(self, cache) -> None:
        self.cache = cache
        self.metrics = {spec.name: self._get_or_add(spec) for spec in SPECS}

    def _get_or_add(self, spec: MetricSpec):
        try:
            return self.cache.get_metric(spec.name, spec.type)
        except MetricsCacheKeyError:
            return self.cache.add_metric_to_cache(spec.name, spec.unit, list(spec.dimensions), spec.type)

    def emit(self, spec: MetricSpec, value: float, labels: Sequence[str]) -> None:
        self.metrics[spec.name].add_or_update(value, list(labels))


def sink_for(context) -> MetricsSink | None:
    """The metrics sink of the engine running this worker: `context.metrics_sink` when the engine set one (the
    Ray engine: Ray's metrics), else TorchServe's cache (`context.metrics`), else None (write nothing)."""
    sink = getattr(context, METRICS_SINK_ATTRIBUTE, None)
    if sink is not None:
        return sink
    cache = getattr(context, "metrics", None)
    return TorchServeSink(cache) if cache is not None else None


class HandlerMetrics:
    """The metrics of one worker's model version, written to the engine's sink (None: nothing is written)."""

    def __init__(self, sink: MetricsSink | None, model_name: str, model_version: str, batch_size: int) -> None:
        self.sink = sink
        self.model_name = str(model_name)
        self.labels = [self.model_name, str(model_version)]
        self.batch_size = max(1, int(batch_size))

    @classmethod
    def for_context(cls, context, batch_size: int) -> HandlerMetrics:
        """The metrics of the model version `context` (a TorchServe worker Context) serves."""
        return cls(sink_for(context), context.model_name, model_version(context.manifest), batch_size)

    def _emit(self, spec: MetricSpec, value: float, *extra: str) -> None:
        self.sink.emit(spec, value, [*self.labels, *extra])

    def batch(self, requests: Sequence[object], inputs: int, decode_ms: float, inference_ms: float | None,
              handler_ms: float) -> None:
        """One answered batch: `requests` are its entries (Decoded, or the ClientError each was refused with),
        `inputs` the rows sent through the model, times in ms (`inference_ms` None when inference was skipped)."""
        if self.sink is None:
            return
        for name, count in sorted(collections.Counter(map(outcome, requests)).items()):
            self._emit(SPEC[REQUESTS], count, name)
        self._emit(SPEC[BATCH_REQUESTS], len(requests))
        self._emit(SPEC[BATCH_INPUTS], inputs)
        self._emit(SPEC[BATCH_FILL], round(len(requests) / self.batch_size, 4))
        self._emit(SPEC[DECODE_MS], round(decode_ms, 3))
        if inference_ms is not None:
            self._emit(SPEC[INFERENCE_MS], round(inference_ms, 3))
        self.sink.emit(SPEC[HANDLER_TIME], round(handler_ms, 2), [self.model_name, "Model"])

    def failed(self, requests: int) -> None:
        """A batch of `requests` that raised (TorchServe answers each with 503): counted as server_error."""
        if self.sink is not None:
            self._emit(SPEC[REQUESTS], requests, SERVER_ERROR)
