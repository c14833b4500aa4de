"""Handler metrics on TorchServe's /metrics (Prometheus text, metrics listener): declared in config/metrics.yaml,
written by handlers/metrics.py, on a fresh server of the current handlers with the shipped batching settings."""

from __future__ import annotations

import pytest

from tests.e2e._helpers import batch_lines, send_together, wait_for
from tests.e2e._monitoring import BAD, good, mnist_server
from toolkit.client.metrics import scrape

pytestmark = pytest.mark.slow


def handler_samples(server, name: str) -> dict[tuple, float]:
    """Samples of `name` for mnist on /metrics: (sample name, outcome or le) -> value."""
    return {
        (sample, labels.get("outcome", labels.get("le", ""))): value
        for sample, labels, value in scrape(server.urls.metrics)
        if sample.startswith(name) and labels.get("model_name") == "mnist"
    }


def test_five_good_and_three_wrong_shape_requests_count_three_validation_errors(tmp_path):
    """Outcomes are counted per request inside one batch: 5 good and 3 wrong-shape requests to mnist, sent
    together (batched by the shipped batchSize 32 / maxBatchDelay 1 ms), give
    handler_requests_total{outcome="validation_error"} = 3."""
    with mnist_server(tmp_path) as server:
        offset = (server.log_dir / "model_log.log").stat().st_size
        reqs = [good()] * 5 + [BAD["validation_error"]] * 3
        answers = send_together(server.urls.inference, server.read_keys().inference, reqs)
        assert [a.status for a in answers] == [200] * 5 + [400] * 3
        batches = wait_for(lambda: (b := batch_lines(server.log_dir, offset, "mnist"))
                           and sum(x["requests"] for x in b) == 8 and b, 30)
        counts = wait_for(lambda: (c := handler_samples(server, "handler_requests_total"))
                          and sum(c.values()) == 8 and c, 30)
        assert counts == {("handler_requests_total", "ok"): 5, ("handler_requests_total", "validation_error"): 3}

        hist = handler_samples(server, "handler_batch_requests")
        assert hist[("handler_batch_requests_count", "")] == len(batches)
        assert hist[("handler_batch_requests_sum", "")] == 8
        assert hist[("handler_batch_requests_bucket", "+Inf")] == len(batches)
        inputs = handler_samples(server, "handler_batch_inputs")
        assert inputs[("handler_batch_inputs_sum", "")] == 5
        for name in ("handler_decode_milliseconds", "handler_batch_fill_ratio"):
            assert handler_samples(server, name)[(f"{name}_count", "")] == len(batches), name
        forwards = sum(1 for batch in batches if batch["inputs"])  # a batch of only refused requests has none
        inference = handler_samples(server, "handler_inference_milliseconds")
        assert inference[("handler_inference_milliseconds_count", "")] == forwards
