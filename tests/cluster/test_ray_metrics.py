"""The handler metrics under the Ray engine: the handlers write them to Ray's metrics (the engine's sink,
toolkit.engines.ray.metrics), and each node's metrics agent exports them on its Prometheus endpoint, as
TorchServe's frontend exports them on 8082."""

from __future__ import annotations

import json

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster.conftest import Cluster
from toolkit.engines.ray.cluster import LocalRayCluster
from toolkit.polling import poll_until

REQUESTS = "ray_handler_requests_total"  # handlers.metrics.REQUESTS, as Ray exports a counter
EXPORT_TIMEOUT_S = 90.0  # Ray's metrics agents export every 10 s by default


def exported(cluster: Cluster, outcome: str) -> float:
    """The sum over every node's Prometheus endpoint of `ray_handler_requests_total` for tabular 1.0 and
    `outcome`."""
    state = LocalRayCluster(cluster.run_dir).state()
    total = 0.0
    for node in state.nodes:
        url = f"http://{node.ip}:{node.ports['metrics-export-port']}/metrics"
        text = requests.get(url, timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = sample.labels
                if (sample.name == REQUESTS and labels.get("model_name") == "tabular"
                        and labels.get("model_version") == "1.0" and labels.get("outcome") == outcome):
                    total += sample.value
    return total


def test_a_bad_request_is_counted_on_rays_prometheus_endpoint(cluster: Cluster) -> None:
    before = exported(cluster, "validation_error")
    headers = {"Authorization": f"Bearer {cluster.keys.inference}", "Content-Type": "application/json"}
    bad = requests.post(f"{cluster.url}/predictions/tabular", data=json.dumps({"inputs": [[1.0] * 29]}),
                        headers=headers, timeout=60)
    assert bad.status_code == 400 and bad.json()["type"] == "validation_error"
    assert poll_until(lambda: exported(cluster, "validation_error") >= before + 1, EXPORT_TIMEOUT_S, every_s=2.0), (
        f"{REQUESTS}{{outcome=validation_error}} stayed at {exported(cluster, 'validation_error')}")
