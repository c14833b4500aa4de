"""Deploy archives on a running Ray cluster as Serve applications (toolkit.engines.ray.app), wait until they
answer, and take them down.

The front (toolkit.engines.ray.tuning) runs on the head node only (`HeadOnly`) on <http_port>: Serve's Python
proxy binds 127.0.0.1, HAProxy every interface (its replicas must be reachable at their node's address). Two
nodes on one machine never fight over the port. The applications are detached: they keep serving after the
deploying driver exits, until `undeploy` or the cluster stops.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import requests

from toolkit.client.auth import Keys, key_expiry, read_keys
from toolkit.engines.ray.tuning import Tuning
from toolkit.engines.tokens import LIFETIME_S, write_key_file
from toolkit.errors import ServerStartError
from toolkit.polling import poll_until
from toolkit.torchserve import RESOURCE_NOT_FOUND

if TYPE_CHECKING:
    from toolkit.engines.ray.app import ServedApp

SERVED_FILE = "served.json"
READY_TIMEOUT_S = 300.0
NODES_JOIN_TIMEOUT_S = 60.0  # a node's `ray start` returns before the GCS counts its resources


@dataclass(frozen=True)
class Served:
    """What `start` deployed, recorded in the run dir (`served.json`) for `spread` and `join`: the archives'
    paths, the front's port and the tuning."""

    archives: list[str]
    http_port: int
    tuning: Tuning

    def save(self, run_dir: Path) -> None:
        (run_dir / SERVED_FILE).write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")

    @classmethod
    def load(cls, run_dir: Path) -> Served:
        """The record of `run_dir`; ServerStartError when there is none (nothing was started from it)."""
        try:
            data = json.loads((run_dir / SERVED_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ServerStartError(f"nothing deployed from {run_dir} ({exc}); run `start` first") from None
        return cls(data["archives"], data["http_port"], Tuning(**data["tuning"]))


def _connect(env: dict[str, str], address: str) -> None:
    """Attach this process to the cluster as a driver (token auth and Serve's settings from `env`, set before
    Ray is imported: its core and Serve read them at import)."""
    for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH"):
        os.environ[key] = env[key]
    os.environ.update({key: value for key, value in env.items() if key.startswith("RAY_SERVE_")})
    import ray

    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False, logging_level="WARNING")


def _cpus(ray: object) -> float:
    """Ray's logical CPUs of the nodes that joined so far."""
    return float(ray.cluster_resources().get("CPU", 0.0))


def _answers(url: str, keys: Keys, prefix: str) -> bool:
    """Whether the front sends `prefix` to a replica that answers: TorchServe's JSON 404 for a GET (HAProxy
    answers a route with no server up by a text 500)."""
    try:
        resp = requests.get(f"{url}{prefix}", headers={"Authorization": f"Bearer {keys.inference}"}, timeout=5)
        return resp.status_code == 404 and resp.json().get("type") == RESOURCE_NOT_FOUND.type
    except (requests.RequestException, ValueError):
        return False


def _running(url: str, keys: Keys, apps: Sequence[ServedApp]) -> bool:
    """True once every application reports RUNNING, the front routes every prefix (Serve's `/-/routes`) and
    each prefix answers through it."""
    from ray import serve

    statuses = serve.status().applications
    if any(getattr(statuses.get(app.name), "status", None) != "RUNNING" for app in apps):
        return False
    try:
        routes = requests.get(f"{url}/-/routes", timeout=5).json()
    except (requests.RequestException, ValueError):
        return False
    if not isinstance(routes, dict) or not {app.route_prefix for app in apps} <= routes.keys():
        return False
    return all(_answers(url, keys, app.route_prefix) for app in apps)


def _ready_nodes(ray: object, need: float) -> None:
    """Wait until the nodes that joined have the logical CPUs `need`; ServerStartError naming both otherwise."""
    if not poll_until(lambda: _cpus(ray) >= need, NODES_JOIN_TIMEOUT_S, every_s=0.5):  # nodes still joining
        raise ServerStartError(
            f"the archives' minimum replicas need {need:g} of Ray's logical CPUs, the cluster has {_cpus(ray):g}: "
            "lower ray.min_replicas or ray.num_cpus in their YAMLs, deploy fewer archives, or add nodes"
        )


def _run(apps: Sequence[ServedApp], http_port: int, keys: Keys, tuning: Tuning, timeout_s: float) -> None:
    """Start Serve's front, run `apps` and wait until every one answers through it."""
    from ray import serve

    logging = {"enable_access_log": tuning.access_log}
    serve.start(http_options={"host": tuning.http_host(), "port": http_port, "location": "HeadOnly"},
                logging_config=logging)
    serve.run_many([serve.RunTarget(a.app, a.name, a.route_prefix, logging) for a in apps],
                   wait_for_applications_running=False)
    url = f"http://127.0.0.1:{http_port}"
    if not poll_until(lambda: _running(url, keys, apps), timeout_s, every_s=1.0):
        raise ServerStartError(f"Ray Serve applications not running after {timeout_s:g} s: {serve.status()}")


def _apps(archives: Sequence[Path], keys: Keys, expires_at_s: float, tuning: Tuning) -> list[ServedApp]:
    """The applications of `archives` (each opened and validated once) in the layout of `tuning`."""
    from toolkit.archive.mar import Archive
    from toolkit.engines.ray.app import CATCH_ALL_APP, ServedApp, build_app, build_apps

    opened = [Archive.open(path) for path in archives]
    wait_s = None if tuning.batch_wait_ms is None else tuning.batch_wait_ms / 1000
    if tuning.front == "routed":
        return [ServedApp(CATCH_ALL_APP, "/", build_app(opened, keys.inference, expires_at_s, wait_s))]
    return build_apps(opened, keys.inference, expires_at_s, wait_s)


def deploy(env: dict[str, str], address: str, archives: Sequence[Path], key_file: Path, http_port: int,
           tuning: Tuning | None = None, timeout_s: float = READY_TIMEOUT_S) -> Keys:
    """Write fresh keys to `key_file`, deploy `archives` in the layout of `tuning` (default `Tuning()`) and
    wait until every application runs and answers through the front; ServerStartError naming the
    applications' state otherwise."""
    if not archives:
        raise ServerStartError("no archives to deploy (run `make archive` first)")
    tuning = tuning or Tuning()
    _connect(env, address)
    import ray

    from toolkit.archive.mar import Archive
    from toolkit.engines.ray.app import cpus_needed

    _ready_nodes(ray, cpus_needed([Archive.open(path) for path in archives]))  # validated before anything starts
    keys, expires = write_key_file(key_file)
    _run(_apps(archives, keys, expires, tuning), http_port, keys, tuning, timeout_s)
    return keys


def alive_ips(env: dict[str, str], address: str) -> set[str]:
    """The addresses of the nodes the cluster counts alive."""
    _connect(env, address)
    import ray

    return {node["NodeManagerAddress"] for node in ray.nodes() if node["Alive"]}


def crowded(actors: list[dict], alive_ips: set[str]) -> set[str]:
    """Deployments whose two or more replicas all sit on one node while other nodes are alive."""
    nodes: dict[str, set[str]] = {}
    counts: dict[str, int] = {}
    for actor in actors:
        nodes.setdefault(actor["deployment"], set()).add(actor["node_ip"])
        counts[actor["deployment"]] = counts.get(actor["deployment"], 0) + 1
    return {name for name, ips in nodes.items() if counts[name] >= 2 and len(ips) == 1 and len(alive_ips) > 1}


SPREAD_ROUNDS = 3  # rollouts of one application before `spread` gives up on it


def _pids(env: dict[str, str], address: str, deployment: str) -> set[int]:
    return {a["pid"] for a in replica_actors(env, address) if a["deployment"] == deployment}


def _roll(env: dict[str, str], address: str, app: ServedApp, http_port: int, keys: Keys, tuning: Tuning,
          timeout_s: float) -> None:
    """Run `app` again and wait until every replica of it was replaced by a new, RUNNING one."""
    old = _pids(env, address, app.name)
    _run([app], http_port, keys, tuning, timeout_s)

    def rolled() -> bool:
        states, pids = replicas(env, address).get(app.name, {}), _pids(env, address, app.name)
        return set(states) == {"RUNNING"} and len(pids) == len(old) and not pids & old

    if not poll_until(rolled, timeout_s, every_s=1.0):
        raise ServerStartError(f"{app.name} not rolled out after {timeout_s:g} s: {replicas(env, address)}")


def spread(env: dict[str, str], address: str, archives: Sequence[Path], key_file: Path, http_port: int,
           tuning: Tuning, timeout_s: float = READY_TIMEOUT_S) -> list[str]:
    """Spread the replicas of every archive crowded on one node (`crowded`) over the alive nodes again, and
    return their application names. Serve never moves a running replica, so a node that joins stays empty until
    replicas start; this runs each crowded application again with the keys of `key_file`, which Serve rolls out
    replica by replica (each drained before it stops, so no request is lost) and places with Ray's SPREAD
    strategy. SPREAD balances the whole cluster, not each deployment, so one application at a time, and again
    (up to SPREAD_ROUNDS times) when its new replicas still share a node."""
    alive = alive_ips(env, address)
    names = crowded(replica_actors(env, address), alive)
    keys, expires = read_keys(key_file), key_expiry(key_file) or time.time() + LIFETIME_S
    apps = [app for app in _apps(archives, keys, expires, tuning) if app.name in names]
    for app in apps:
        for _ in range(SPREAD_ROUNDS):
            _roll(env, address, app, http_port, keys, tuning, timeout_s)
            if app.name not in crowded(replica_actors(env, address), alive):
                break
        else:
            raise ServerStartError(f"{app.name} still on one node after {SPREAD_ROUNDS} rollouts")
    return [app.name for app in apps]


def replicas(env: dict[str, str], address: str) -> dict[str, dict[str, int]]:
    """Deployment name -> replica state -> count, over every running application."""
    _connect(env, address)
    from ray import serve

    return {name: {str(state): n for state, n in d.replica_states.items()}
            for app in serve.status().applications.values() for name, d in app.deployments.items()}


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


def disconnect() -> None:
    """Detach this process from the cluster (its event listeners stop printing)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()


def undeploy(env: dict[str, str], address: str) -> None:
    """Shut Serve down on the cluster (every application, the proxy and the controller)."""
    _connect(env, address)
    from ray import serve

    serve.shutdown()
