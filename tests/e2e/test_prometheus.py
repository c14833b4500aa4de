"""A real Prometheus (Debian's package, toolkit.monitor.LocalPrometheus) scraping a fresh TorchServe: known
traffic in, every metric read back through Prometheus's HTTP query API, and every panel of the Grafana
dashboard (deploy/grafana/dashboard.json) returning data from it.

The traffic: rounds of 8 requests sent together to mnist (batchSize 8, maxBatchDelay 500 ms: one batch a round
when the frontend keeps up): good requests (one of them a list of 2 images) and one of each bad kind, then one
round of bad requests only (a batch without a forward); Prometheus scrapes between the first round and the
others, so the dashboard's rates see every series grow. How the frontend actually cut the batches is read from
the handler's own `batch:` log lines, so the histogram counts and sums are checked exactly.
"""

from __future__ import annotations

import math
import shutil
import time
from collections import Counter

import pytest

from tests.e2e._helpers import batch_lines, send_together, wait_for
from tests.e2e._monitoring import BAD, STATUS, good, mnist_server
from toolkit.monitor import dashboard
from toolkit.monitor.prometheus import LocalPrometheus
from toolkit.process import free_ports

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _prometheus_installed() -> None:
    """Fail, not skip, without Prometheus: `make test` installs Debian's package when run as root."""
    if shutil.which("prometheus") is None:
        pytest.fail("no prometheus on PATH: install it with `apt-get install -y prometheus` (make test does, as root)")

BATCH = 8
ROUNDS = [
    ["ok:2", "ok", "ok", "ok", "ok", "decode_error", "validation_error", "payload_too_large"],
    ["ok", "ok", "ok", "ok", "ok", "decode_error", "validation_error", "payload_too_large"],
    ["ok", "ok", "ok", "validation_error", "validation_error", "validation_error", "decode_error", "ok"],
    ["decode_error", "validation_error", "payload_too_large", "validation_error"],
]
MNIST = 'model_name="mnist"'


def request_of(kind: str):
    name, _, images = kind.partition(":")
    return good(int(images or 1)) if name == "ok" else BAD[name]


@pytest.fixture(scope="module")
def traffic(tmp_path_factory):
    """(Prometheus API, what was sent, the handler's batch lines) after the known traffic, both servers up."""
    root = tmp_path_factory.mktemp("monitored")
    with mnist_server(root, batchSize=BATCH, maxBatchDelay=500) as server:
        prom = LocalPrometheus(root / "prometheus", [server.urls.metrics.removeprefix("http://")],
                               port=free_ports().inference, interval_s=1)
        with prom.running():
            offset = (server.log_dir / "model_log.log").stat().st_size
            key = server.read_keys().inference
            for number, kinds in enumerate(ROUNDS):
                answers = send_together(server.urls.inference, key, [request_of(k) for k in kinds])
                assert [a.status for a in answers] == [STATUS[k.partition(":")[0]] for k in kinds]
                if number == 0:  # every series now exists; Prometheus must see it before it grows (rate > 0)
                    prom.wait_scraped(after=time.time() + 1)
            sent = Counter(k.partition(":")[0] for kinds in ROUNDS for k in kinds)
            total = sum(sent.values())
            batches = wait_for(lambda: (b := batch_lines(server.log_dir, offset, "mnist"))
                               and sum(x["requests"] for x in b) == total and b, 30)
            done = time.time()
            prom.wait_scraped(after=done + 1)  # a scrape that started after the last metric line was parsed
            yield prom.api(), sent, batches


def test_prometheus_sees_exactly_the_requests_sent_by_outcome(traffic):
    api, sent, _ = traffic
    by_outcome = {s.labels["outcome"]: s.value for s in api.query(f"handler_requests_total{{{MNIST}}}")}
    assert by_outcome == {kind: float(n) for kind, n in sent.items()}
    assert api.value(f"sum(ts_inference_requests_total{{{MNIST}}})") == sum(sent.values())
    refused = sum(n for kind, n in sent.items() if kind != "ok")
    assert api.value("sum(Requests4XX)") == refused


def test_prometheus_histograms_match_the_batches_the_handler_saw(traffic):
    api, sent, batches = traffic
    forwards = [b for b in batches if b["inputs"]]
    good_inputs = sum(int(k.partition(":")[2] or 1) for kinds in ROUNDS for k in kinds if k.startswith("ok"))
    expected = {
        "handler_batch_requests_count": len(batches),
        "handler_batch_requests_sum": sum(sent.values()),
        'handler_batch_requests_bucket{le="+Inf",': len(batches),
        "handler_batch_inputs_count": len(batches),
        "handler_batch_inputs_sum": good_inputs,
        "handler_batch_fill_ratio_count": len(batches),
        "handler_batch_fill_ratio_sum": sum(b["requests"] / BATCH for b in batches),
        "handler_decode_milliseconds_count": len(batches),
        "handler_inference_milliseconds_count": len(forwards),
        'handler_inference_milliseconds_bucket{le="+Inf",': len(forwards),
    }
    for selector, value in expected.items():
        expr = f"{selector}{MNIST}}}" if selector.endswith(",") else f"{selector}{{{MNIST}}}"
        assert api.value(expr) == pytest.approx(value, abs=1e-3), expr
    assert sum(b["inputs"] for b in batches) == good_inputs
    for name in ("handler_decode_milliseconds_sum", "handler_inference_milliseconds_sum"):
        assert api.value(f"{name}{{{MNIST}}}") > 0, name
    assert api.value('HandlerTime{ModelName="mnist"}') > 0
    assert api.value('PredictionTime{ModelName="mnist"}') > 0


def test_every_dashboard_panel_returns_data(traffic):
    api, _, _ = traffic
    empty = []
    for panel in dashboard.panels(dashboard.load()):
        for target in panel.targets:
            expr = dashboard.expand(target.expr, rate_interval="1m")
            values = [s.value for s in api.query(expr)]
            if not any(math.isfinite(v) for v in values):
                empty.append((panel.title, expr, values))
    assert not empty, f"panels without data: {empty}"
