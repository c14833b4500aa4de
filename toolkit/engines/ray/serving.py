"""Deploy archives on a running Ray cluster as one Serve application, wait until it answers, and take it down.

Serve's HTTP proxy runs on the head node only (`HeadOnly`) and binds 127.0.0.1:<http_port>: traffic stays on
loopback, and two nodes on one machine never fight over the port. The application is detached: it keeps
serving after the deploying driver exits, until `undeploy` or the cluster stops.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import requests

from toolkit.client.auth import Keys
from toolkit.engines.tokens import write_key_file
from toolkit.errors import ServerStartError
from toolkit.polling import poll_until

APP_NAME = "ts"
READY_TIMEOUT_S = 300.0
NODES_JOIN_TIMEOUT_S = 60.0  # a node's `ray start` returns before the GCS counts its resources


def _connect(env: dict[str, str], address: str) -> None:
    """Attach this process to the cluster as a driver (token auth from `env`, set before Ray is imported:
    its core reads the token settings at import)."""
    for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH"):
        os.environ[key] = env[key]
    import ray

    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False, logging_level="WARNING")


def _cpus(ray: object) -> float:
    """Ray's logical CPUs of the nodes that joined so far."""
    return float(ray.cluster_resources().get("CPU", 0.0))


def _running(http_url: str, keys: Keys) -> bool:
    """True once the application reports RUNNING and the proxy answers /ping with the key."""
    from ray import serve

    status = serve.status().applications.get(APP_NAME)
    if status is None or status.status != "RUNNING":
        return False
    try:
        resp = requests.get(f"{http_url}/ping", headers={"Authorization": f"Bearer {keys.inference}"}, timeout=5)
    except requests.RequestException:
        return False
    return resp.status_code == 200


def deploy(env: dict[str, str], address: str, archives: Sequence[Path], key_file: Path, http_port: int,
           timeout_s: float = READY_TIMEOUT_S) -> Keys:
    """Write fresh keys to `key_file`, deploy `archives` and wait until every deployment runs and the proxy
    answers; ServerStartError naming the application's state otherwise."""
    if not archives:
        raise ServerStartError("no archives to deploy (run `make archive` first)")
    _connect(env, address)
    import ray
    from ray import serve

    from toolkit.archive.mar import Archive
    from toolkit.engines.ray.app import build_app, cpus_needed

    opened = [Archive.open(path) for path in archives]  # validated once, before anything starts
    need = cpus_needed(opened)
    if not poll_until(lambda: _cpus(ray) >= need, NODES_JOIN_TIMEOUT_S, every_s=0.5):  # nodes still joining
        have = _cpus(ray)
        raise ServerStartError(
            f"the archives' minimum replicas need {need:g} of Ray's logical CPUs, the cluster has {have:g}: "
            "lower ray.min_replicas or ray.num_cpus in their YAMLs, deploy fewer archives, or add nodes"
        )
    keys, expires = write_key_file(key_file)
    serve.start(http_options={"host": "127.0.0.1", "port": http_port, "location": "HeadOnly"})
    serve.run(build_app(opened, keys.inference, expires), name=APP_NAME, route_prefix="/", blocking=False)
    url = f"http://127.0.0.1:{http_port}"
    if not poll_until(lambda: _running(url, keys), timeout_s, every_s=1.0):
        raise ServerStartError(f"Ray Serve application not running after {timeout_s:g} s: {serve.status()}")
    return keys


def replicas(env: dict[str, str], address: str) -> dict[str, dict[str, int]]:
    """Deployment name -> replica state -> count, of the running application."""
    _connect(env, address)
    from ray import serve

    app = serve.status().applications.get(APP_NAME)
    if app is None:
        return {}
    return {name: {str(state): n for state, n in d.replica_states.items()} for name, d in app.deployments.items()}


def replica_actors(env: dict[str, str], address: str) -> list[dict]:
    """Every alive Serve replica: `{"deployment", "node_ip", "pid"}` (where Ray placed it, and its process),
    read from the GCS actor table (Ray's state API would need the dashboard, which the nodes run without)."""
    _connect(env, address)
    from ray._private.state import actors

    found = []
    for info in actors().values():
        name = info.get("ActorClassName", "")
        if name.startswith("ServeReplica:") and info.get("State") == "ALIVE":
            found.append({"deployment": name.split(":")[-1], "node_ip": info["Address"]["IPAddress"],
                          "pid": int(info["Pid"])})
    return found


def undeploy(env: dict[str, str], address: str) -> None:
    """Shut Serve down on the cluster (every application, the proxy and the controller)."""
    _connect(env, address)
    from ray import serve

    serve.shutdown()
