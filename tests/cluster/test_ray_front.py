"""The Ray engine's front without a cluster: an archive's own HTTP front (toolkit.engines.ray.front.ModelFront)
on real Starlette requests, the options of an archive that is its own ingress, the tuning's Serve settings, the
ports a cluster takes and the placement `spread` acts on."""

from __future__ import annotations

import json
import time

import pytest
from starlette.requests import Request as HttpRequest

from tests.paths import STORE, require_built
from toolkit.archive.mar import Archive
from toolkit.engines.ray.app import admitted, build_apps, front_options
from toolkit.engines.ray.cluster import SERVE_PORTS, plan_ports
from toolkit.engines.ray.front import KeyGate, ModelFront, to_worker
from toolkit.engines.ray.serving import crowded
from toolkit.engines.ray.tuning import Tuning
from toolkit.errors import ServerStartError
from toolkit.torchserve import INVALID_KEY, RESOURCE_NOT_FOUND, VERSION_NOT_FOUND

KEY = "k" * 64


def http(method: str, path: str, key: str | None = KEY) -> HttpRequest:
    headers = [(b"content-type", b"image/png")]
    if key is not None:
        headers.append((b"authorization", f"Bearer {key}".encode()))
    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": headers, "scheme": "http", "server": ("127.0.0.1", 8000), "root_path": ""}  # fmt: skip
    return HttpRequest(scope)


def front(expires_in_s: float = 60) -> ModelFront:
    return ModelFront(KeyGate(KEY, time.time() + expires_in_s), "mnist", "1.0", 64)


def test_a_prediction_of_the_model_or_its_version_passes_the_front() -> None:
    for method, path in (("POST", "/predictions/mnist"), ("PUT", "/predictions/mnist/1.0")):
        assert front().refusal(http(method, path)) is None, path


def test_the_front_refuses_as_torchserve_does() -> None:
    cases = [(http("POST", "/predictions/mnist", key=None), INVALID_KEY.body()),
             (http("POST", "/predictions/mnist", key="wrong"), INVALID_KEY.body()),
             (http("GET", "/predictions/mnist"), RESOURCE_NOT_FOUND.body()),
             (http("POST", "/predictions/mnist/1.0/x"), RESOURCE_NOT_FOUND.body()),
             (http("POST", "/predictions/mnist/9.9"), VERSION_NOT_FOUND.body(model="mnist", version="9.9"))]
    for request, body in cases:
        answer = front().refusal(request)
        assert answer is not None and answer.body == body, request.url.path
    expired = front(expires_in_s=-1).refusal(http("POST", "/predictions/mnist"))
    assert expired is not None and expired.body == INVALID_KEY.body()


def test_the_handler_sees_the_body_and_headers_but_not_the_key() -> None:
    forwarded = to_worker(http("POST", "/predictions/mnist"), b"png bytes")
    assert (forwarded.body, forwarded.content_type) == (b"png bytes", "image/png")
    assert "authorization" not in forwarded.headers


def test_an_archive_that_is_its_own_ingress_refuses_beyond_what_it_admits_itself() -> None:
    config = Archive.open(require_built(STORE / "mnist.mar", "make archive")).config
    ray = config.ray_settings()
    assert admitted(config) == ray.max_ongoing_requests + ray.max_queued_requests
    options = front_options(config)
    # Serve lets more in than the replica admits (so the replica answers the rest with TorchServe's 503) and
    # queues none itself (its own 503 is a text body no client of ours retries)
    assert (options["max_ongoing_requests"], options["max_queued_requests"]) == (2 * admitted(config), -1)


def test_each_archive_is_an_application_of_its_own_behind_a_catch_all() -> None:
    archives = [Archive.open(require_built(STORE / f"{name}.mar", "make archive")) for name in ("mnist", "tabular")]
    apps = build_apps(archives, KEY, time.time() + 60)
    routes = {app.name: app.route_prefix for app in apps}
    assert routes == {"ts": "/", "mnist_1.0": "/predictions/mnist", "tabular_1.0": "/predictions/tabular"}


def test_tuning_parses_the_command_line_and_refuses_an_unknown_key() -> None:
    tuning = Tuning.parse(["front=proxy", "access_log=1", "haproxy_threads=2"])
    assert (tuning.front, tuning.access_log, tuning.haproxy_threads) == ("proxy", True, 2)
    assert tuning.label() == "front=proxy access_log=1 haproxy_threads=2"
    assert Tuning.parse(None) == Tuning() and Tuning().label() == ""
    for bad in (["front=nginx"], ["fronts=proxy"], ["access_log=maybe"], ["haproxy_threads=two"], ["front"]):
        with pytest.raises(ServerStartError, match="--tune"):
            Tuning.parse(bad)


def test_a_cluster_s_serve_ports_are_its_own() -> None:
    nodes, serve = plan_ports(["127.0.0.2", "127.0.0.3"], 6379)
    taken = [port for node in nodes for port in node.ports.values()]
    ours = [serve.haproxy_stats, serve.haproxy_metrics, serve.fallback_http, serve.fallback_grpc]
    ours += list(range(serve.ingress_first, serve.ingress_last + 1)) + [serve.grpc_first, serve.grpc_last]
    assert len(ours) == SERVE_PORTS and not set(ours) & set(taken)
    env = Tuning().env(serve, STORE)
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert {env["RAY_SERVE_HAPROXY_STATS_PORT"], env["RAY_SERVE_FALLBACK_PROXY_HTTP_PORT"]} <= set(map(str, ours))
    assert Tuning(front="proxy").env(serve, STORE)["RAY_SERVE_ENABLE_HA_PROXY"] == "0"
    assert json.dumps(env)  # plain strings, as a process environment needs


def test_crowded_names_the_deployments_whose_replicas_share_one_node() -> None:
    actors = [{"deployment": "a", "node_ip": "n1"}, {"deployment": "a", "node_ip": "n1"},
              {"deployment": "b", "node_ip": "n1"}, {"deployment": "b", "node_ip": "n2"},
              {"deployment": "c", "node_ip": "n1"}]  # fmt: skip
    assert crowded(actors, {"n1", "n2"}) == {"a"}
    assert crowded(actors, {"n1"}) == set()
