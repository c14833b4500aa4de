"""How the Ray engine runs Ray Serve on a cluster it starts: the front requests come in by, and Serve's own
switches on the request path. Every field was measured in the bench's peers phase (`--ray-tunings`,
docs/ray.md "What was tried"): the defaults differ from Serve's where that paid (the HAProxy front, the access
log and HAProxy's per-request metrics off) and are Serve's own elsewhere.

    front    haproxy   Serve's HAProxy front (`RAY_SERVE_ENABLE_HA_PROXY`): HAProxy on the head routes by path
                       straight to the archive replicas, each its application's ingress with an HTTP server of
                       its own (Serve's direct ingress): no Python process and no Ray call between the client
                       and the batch.
             proxy     Serve's Python proxy -> the archive replica (one Ray call per request).
             routed    Serve's Python proxy -> the routing Ingress -> the archive replica (two Ray calls; the
                       layout KubeRay's single application keeps).

`Tuning.parse(["front=proxy", "access_log=1"])` reads the command line's `--tune` items (and the bench's
variants); `env(ports)` is the environment every node and driver of the cluster gets.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from toolkit.errors import ServerStartError

Front = Literal["haproxy", "proxy", "routed"]
FRONTS: tuple[str, ...] = get_args(Front)
# A replica leaving (downscale, stop) keeps serving this long so HAProxy drops it from its backends first
# (Serve's default of 30 s only stretches every stop; a reload here takes well under a second).
DRAIN_S = 3.0
# Serve's HAProxy L7 retries: a request whose replica died (connection refused or closed without an answer,
# as when its node is lost) is sent again to another replica instead of failing. Inference is idempotent.
RETRY_ON = "conn-failure empty-response junk-response"
RETRIES = 3
# Autoscaling with HAProxy: requests bypass Serve's handles, so the replicas themselves report their load, by
# default every 10 s and sampled every 6 s (0.2 x the 30 s look-back), which took a replica 51 s to be added
# under load (10 s through Serve's proxy, whose handles report). Every second, sampled every 1.5 s:
METRICS_PUSH_S = 1.0
RESPONSE_TIMEOUT_S = 120  # TorchServe's default responseTimeout
METRICS_RECORD_FACTOR = 0.05


@dataclass(frozen=True)
class ServePorts:
    """The ports Serve binds besides the HTTP front on a cluster of ours (from the cluster's port block):
    HAProxy's stats and Prometheus listeners, the Python proxy HAProxy falls back to when a route has no
    replica up (HTTP, gRPC), and the ranges the ingress replicas' own servers take."""

    haproxy_stats: int
    haproxy_metrics: int
    fallback_http: int
    fallback_grpc: int
    ingress_first: int
    ingress_last: int
    grpc_first: int
    grpc_last: int


@dataclass(frozen=True)
class Tuning:
    """Serve's switches the engine sets (see the module docstring for `front`). `access_log`: Serve's per-request
    access log line in every replica; `user_code_thread`: run the deployment's code on an event loop thread of
    its own (Serve's default) instead of the replica's; `router_thread`: the same for the handle router;
    `grpc_calls`: Ray calls between Serve's processes over Serve's gRPC instead of Ray's actor calls;
    `haproxy_threads`: HAProxy's threads; `haproxy_metrics`: HAProxy's per-request metrics (a Python collector
    parses one log datagram per request); `request_timeout_s`: how long HAProxy waits for a replica's answer
    (None: TorchServe's default responseTimeout, 120 s; `start` sets the largest of the archives');
    `batch_wait_ms`: how long a batch waits to fill, instead of each archive's maxBatchDelay (None)."""

    front: Front = "haproxy"
    access_log: bool = False
    user_code_thread: bool = True
    router_thread: bool = True
    grpc_calls: bool = False
    haproxy_threads: int = 4
    haproxy_metrics: bool = False
    request_timeout_s: int | None = None
    batch_wait_ms: float | None = None

    @classmethod
    def parse(cls, items: list[str] | None) -> Tuning:
        """`key=value` items over the defaults; ServerStartError naming the item and the known keys."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, object] = {}
        for item in items or []:
            key, sep, raw = item.partition("=")
            if not sep or key not in known:
                raise ServerStartError(f"--tune {item!r}: expected key=value with key one of {', '.join(known)}")
            values[key] = _value(key, raw, known[key].type)
        return cls(**values)

    def label(self) -> str:
        """The fields that differ from the defaults, `key=value` joined by spaces ('' for the defaults)."""
        default = Tuning()
        return " ".join(f"{f.name}={_text(getattr(self, f.name))}" for f in dataclasses.fields(self)
                        if getattr(self, f.name) != getattr(default, f.name))

    @property
    def haproxy(self) -> bool:
        return self.front == "haproxy"

    def http_host(self) -> str:
        """The address Serve's front binds. HAProxy reaches the ingress replicas at their node's address, and
        Serve gives them the front's host, so with HAProxy it is every interface (the bearer key still guards
        every route but Serve's own /-/healthz and /-/routes); Serve's Python proxy binds loopback only."""
        return "0.0.0.0" if self.haproxy else "127.0.0.1"

    def env(self, ports: ServePorts, state_dir: Path) -> dict[str, str]:
        """Serve's environment for every node and driver of the cluster (Serve reads it at import)."""
        env = {
            "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": _flag(self.user_code_thread),
            "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": _flag(self.router_thread),
            "RAY_SERVE_USE_GRPC_BY_DEFAULT": _flag(self.grpc_calls),
            "RAY_SERVE_PROXY_USE_GRPC": _flag(self.grpc_calls),
            "RAY_SERVE_ENABLE_HA_PROXY": _flag(self.haproxy),
            "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": str(METRICS_PUSH_S),
            "RAY_SERVE_AUTOSCALING_METRIC_RECORD_INTERVAL_FACTOR": str(METRICS_RECORD_FACTOR),
        }
        if self.haproxy:
            env.update(_haproxy_env(self, ports, state_dir))
        return env


def _haproxy_env(tuning: Tuning, ports: ServePorts, state_dir: Path) -> dict[str, str]:
    """HAProxy's ports and files: ours, not Serve's machine-wide defaults (/tmp/haproxy-serve, 8404, 9101,
    8500, 9500), so two clusters on one machine never share them."""
    return {
        "RAY_SERVE_HAPROXY_NBTHREAD": str(tuning.haproxy_threads),
        "RAY_SERVE_HAPROXY_METRICS_ENABLED": _flag(tuning.haproxy_metrics),
        "RAY_SERVE_HAPROXY_TIMEOUT_SERVER_S": str(tuning.request_timeout_s or RESPONSE_TIMEOUT_S),
        "RAY_SERVE_HAPROXY_RETRY_ON": RETRY_ON,
        "RAY_SERVE_HAPROXY_RETRIES": str(RETRIES),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(ports.haproxy_stats),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(ports.haproxy_metrics),
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(ports.fallback_http),
        "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(ports.fallback_grpc),
        "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(ports.ingress_first),
        "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(ports.ingress_last),
        "RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT": str(ports.grpc_first),
        "RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT": str(ports.grpc_last),
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": str(DRAIN_S),
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(state_dir / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(state_dir / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(state_dir),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(state_dir / "server-state"),
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(state_dir / "metrics.sock"),
    }


def _flag(value: bool) -> str:
    return "1" if value else "0"


def _text(value: object) -> str:
    return _flag(value) if isinstance(value, bool) else str(value)


def _value(key: str, raw: str, kind: object) -> object:
    """`raw` as the field's type: a bool from 1/0/true/false, an int, a float, or one of the fronts."""
    if kind in (bool, "bool"):
        if raw.lower() not in ("1", "0", "true", "false"):
            raise ServerStartError(f"--tune {key}={raw}: expected 1 or 0")
        return raw.lower() in ("1", "true")
    if "int" in str(kind):
        try:
            return int(raw)
        except ValueError:
            raise ServerStartError(f"--tune {key}={raw}: expected a whole number") from None
    if "float" in str(kind):
        try:
            return float(raw)
        except ValueError:
            raise ServerStartError(f"--tune {key}={raw}: expected a number") from None
    if raw not in FRONTS:
        raise ServerStartError(f"--tune {key}={raw}: expected one of {', '.join(FRONTS)}")
    return raw
