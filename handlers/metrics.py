"""Handler metrics: what each batch did, written through TorchServe's metrics API (`context.metrics`).

One `HandlerMetrics` per worker; `handlers.base.ServingHandler.handle` calls `batch` once per batch (or `failed`
when the batch raised). Each metric is one `[METRICS]` line on the worker's stdout that the frontend parses and,
in Prometheus mode, exposes on the metrics listener (8082), but ONLY when config/metrics.yaml declares it under
`model_metrics` with these names and dimensions (values are sent by position, in that order). Prometheus labels:
`model_name`, `model_version` (+ `outcome`), and `Hostname`, which the frontend adds.

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

Without a metrics cache (`context.metrics` None: the offline harness) nothing is written. Handlers never import
the toolkit; this module needs only TorchServe's `ts.metrics`.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from ts.metrics.metric_cache_errors import MetricsCacheKeyError
from ts.metrics.metric_type_enum import MetricTypes

from handlers.errors import ClientError

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
class Spec:
    """One metric as config/metrics.yaml declares it."""

    name: str
    type: MetricTypes
    unit: str
    dimensions: tuple[str, ...] = MODEL_DIMS


SPECS = (
    Spec(REQUESTS, MetricTypes.COUNTER, "requests", (*MODEL_DIMS, "outcome")),
    Spec(BATCH_REQUESTS, MetricTypes.HISTOGRAM, "requests"),
    Spec(BATCH_INPUTS, MetricTypes.HISTOGRAM, "inputs"),
    Spec(BATCH_FILL, MetricTypes.HISTOGRAM, "ratio"),
    Spec(DECODE_MS, MetricTypes.HISTOGRAM, "ms"),
    Spec(INFERENCE_MS, MetricTypes.HISTOGRAM, "ms"),
    Spec(HANDLER_TIME, MetricTypes.GAUGE, "ms", ("ModelName", "Level")),
)


def outcome(request: object) -> str:
    """`ok` for a decoded request, else its ClientError's type."""
    return request.error_type if isinstance(request, ClientError) else OK


class HandlerMetrics:
    """The metrics of one worker's model version, written through TorchServe's metrics cache (`cache`).

    `cache` is `context.metrics` (a ts.metrics MetricCacheAbstract), or None to write nothing. Metrics missing
    from it (a metrics config without ours) are added, so writing never fails; the frontend still drops them.
    """

    def __init__(self, cache, model_name: str, model_version: str, batch_size: int) -> None:
        self.cache = cache
        self.model_name = str(model_name)
        self.labels = [self.model_name, str(model_version)]
        self.batch_size = max(1, int(batch_size))
        self.metrics = {spec.name: self._get_or_add(spec) for spec in SPECS} if cache is not None else {}

    @classmethod
    def for_context(cls, context) -> HandlerMetrics:
        """The metrics of the model version `context` (a TorchServe worker Context) serves."""
        version = (context.manifest or {}).get("model", {}).get("modelVersion", "")
        batch_size = context.system_properties.get("batch_size") or 1
        return cls(getattr(context, "metrics", None), context.model_name, version, batch_size)

    def _get_or_add(self, spec: Spec):
        try:
            return self.cache.get_metric(spec.name, spec.type)
        except MetricsCacheKeyError:
            return self.cache.add_metric_to_cache(spec.name, spec.unit, list(spec.dimensions), spec.type)

    def _emit(self, name: str, value: float, *extra: str) -> None:
        self.metrics[name].add_or_update(value, [*self.labels, *extra])

    def batch(self, requests: Sequence[object], inputs: int, decode_ms: float, inference_ms: float | None,
              handler_ms: float) -> None:
        """One answered batch: `requests` are its entries (Decoded, or the ClientError each was refused with),
        `inputs` the rows sent through the model, times in ms (`inference_ms` None when inference was skipped)."""
        if not self.metrics:
            return
        for name, count in sorted(collections.Counter(map(outcome, requests)).items()):
            self._emit(REQUESTS, count, name)
        self._emit(BATCH_REQUESTS, len(requests))
        self._emit(BATCH_INPUTS, inputs)
        self._emit(BATCH_FILL, round(len(requests) / self.batch_size, 4))
        self._emit(DECODE_MS, round(decode_ms, 3))
        if inference_ms is not None:
            self._emit(INFERENCE_MS, round(inference_ms, 3))
        self.metrics[HANDLER_TIME].add_or_update(round(handler_ms, 2), [self.model_name, "Model"])

    def failed(self, requests: int) -> None:
        """A batch of `requests` that raised (TorchServe answers each with 503): counted as server_error."""
        if self.metrics:
            self._emit(REQUESTS, requests, SERVER_ERROR)
