"""TorchServe's Prometheus metrics endpoint (`<metrics_url>/metrics`, no token), parsed by prometheus-client.

A sample is `(name, labels, value)`: the sample's own name (counters keep their `_total`), its labels, and
its value as a float.
"""

from __future__ import annotations

import requests
from prometheus_client.parser import text_string_to_metric_families

Sample = tuple[str, dict[str, str], float]


def parse_prometheus(text: str) -> list[Sample]:
    """Prometheus text exposition -> one (name, labels, value) per sample line."""
    return [
        (sample.name, dict(sample.labels), float(sample.value))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def scrape(metrics_url: str, timeout_s: float = 10.0) -> list[Sample]:
    """The samples of `<metrics_url>/metrics` (TorchServe asks no token there)."""
    resp = requests.get(f"{metrics_url.rstrip('/')}/metrics", timeout=timeout_s)
    resp.raise_for_status()
    return parse_prometheus(resp.text)
