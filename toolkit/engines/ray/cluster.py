"""A local Ray cluster of several nodes on this machine, each node a `ray start --block` child we own.

Facts of Ray 2.60 here: a loopback `--node-ip-address` of 127.0.0.1 or localhost is replaced by the
machine's routable address, other loopback addresses (127.0.0.2, ...) are kept, so every node gets one of its
own and all traffic stays on loopback. Token authentication is on (`RAY_AUTH_MODE=token`); the token is
generated per cluster into `<run_dir>/ray_auth_token` (mode 0600) and handed to every node and driver with
`RAY_AUTH_TOKEN_PATH`. Every port a node binds is given explicitly (a block of free loopback ports, or
fixed ones for `make ray-serve`), so two clusters never collide. A node stops, with all its processes, on
SIGTERM to its `ray start --block` process (it drains for `DRAIN_TIMEOUT_S` first): nothing is stopped by
name, and `ray stop` (which stops every Ray on the machine) is never used.

    <run_dir>/cluster.json      addresses, ports and pids of the nodes
    <run_dir>/ray_auth_token    Ray's cluster token (not the inference key)
    <run_dir>/logs/<node>.log   each `ray start` output
    /tmp/ray-XXXX/              Ray's temp dir (short: Ray's unix socket paths must stay under 108 bytes)
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from toolkit.engines.ray.tuning import ServePorts, Tuning
from toolkit.errors import ServerStartError
from toolkit.polling import poll_until
from toolkit.process import Fingerprint, OwnedProcess, port_block, tail

READY_LINE = "This command will now block forever"
NODE_START_TIMEOUT_S = 90.0
DRAIN_TIMEOUT_S = 5.0  # RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S: Ray's default of 30 s only delays a stop
PORTS_PER_NODE = 10  # named ports below; worker ports come on top
WORKER_PORTS = 60  # worker processes per node, each needs a port of its own
NODE_PORT_NAMES = (
    "node-manager-port", "object-manager-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
    "runtime-env-agent-port", "metrics-export-port",
)
HEAD_PORT_NAMES = ("port", "ray-client-server-port", "dashboard-port")
# Serve's own listeners besides the front (toolkit.engines.ray.tuning.ServePorts): HAProxy's stats and metrics,
# the fallback proxy's HTTP and gRPC, the ingress replicas' HTTP servers (one each; a stopped replica's port rests
# for minutes before reuse) and an unused gRPC range Serve insists on.
INGRESS_PORTS = 40
SERVE_PORTS = 4 + INGRESS_PORTS + 2
OBJECT_STORE_BYTES = 200_000_000  # per node: archives and requests are small; the default takes 30 % of RAM
# Serve's HTTP proxy port on 127.0.0.1 (TorchServe's inference API there); scripts/ray_serve.sh passes its own
# RAY_HTTP_PORT, default the same.
HTTP_PORT = 8000


@dataclass
class Node:
    """One Ray node: its loopback address, the ports it binds, and the pid of its `ray start --block`."""

    name: str
    ip: str
    head: bool
    ports: dict[str, int]
    pid: int | None = None

    def owned(self) -> OwnedProcess:
        """Its `ray start` process as recorded: the pid, ours while its command line names the node's address."""
        return OwnedProcess(self.pid, Fingerprint((self.ip,)))

    def start_args(self, head_address: str, num_cpus: int, temp_dir: str) -> list[str]:
        """`ray start` arguments of this node."""
        args = ["--block", "--node-ip-address", self.ip, "--num-cpus", str(num_cpus), "--temp-dir", temp_dir,
                "--disable-usage-stats", "--object-store-memory", str(OBJECT_STORE_BYTES)]
        args += ["--head", "--include-dashboard=false"] if self.head else ["--address", head_address]
        for name, port in self.ports.items():
            args += [f"--{name}", str(port)]
        return args


def plan_ports(ips: list[str], base_port: int | None = None) -> tuple[list[Node], ServePorts]:
    """Nodes for `ips` (the first is the head) with their ports, and Serve's ports after them: consecutive from
    `base_port` (fixed, for `make ray-serve`), else a free block."""
    per_node = PORTS_PER_NODE + WORKER_PORTS
    count = per_node * len(ips) + SERVE_PORTS
    ports = list(range(base_port, base_port + count)) if base_port else port_block(count)
    serve = ports[-SERVE_PORTS:]
    serve_ports = ServePorts(*serve[:4], serve[4], serve[3 + INGRESS_PORTS], serve[-2], serve[-1])
    return plan_nodes(ips, ports[:-SERVE_PORTS]), serve_ports


def plan_nodes(ips: list[str], ports: list[int]) -> list[Node]:
    """Nodes for `ips` (the first is the head), each with its share of `ports`."""
    per_node = PORTS_PER_NODE + WORKER_PORTS
    nodes = []
    for index, ip in enumerate(ips):
        mine = ports[index * per_node:(index + 1) * per_node]
        names = (HEAD_PORT_NAMES if index == 0 else ()) + NODE_PORT_NAMES
        named = dict(zip(names, mine, strict=False))
        named["min-worker-port"], named["max-worker-port"] = mine[PORTS_PER_NODE], mine[-1]
        nodes.append(Node("head" if index == 0 else f"node-{index}", ip, index == 0, named))
    return nodes


@dataclass
class ClusterState:
    """What cluster.json records: enough to reach, inspect and stop the cluster from another process."""

    nodes: list[Node]
    temp_dir: str
    num_cpus: int
    http_port: int = HTTP_PORT
    serve_ports: ServePorts | None = None
    tuning: Tuning | None = None  # None: Serve as Ray ships it (no settings of ours)

    @property
    def address(self) -> str:
        """The GCS address drivers and nodes join (`<head ip>:<port>`)."""
        head = self.nodes[0]
        return f"{head.ip}:{head.ports['port']}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> ClusterState:
        data = json.loads(text)
        data.pop("extra", None)  # written by earlier versions, unused
        data["nodes"] = [Node(**node) for node in data["nodes"]]
        data["serve_ports"] = ServePorts(**data["serve_ports"]) if data.get("serve_ports") else None
        data["tuning"] = Tuning(**data["tuning"]) if data.get("tuning") else None
        return cls(**data)


class LocalRayCluster:
    """Ray nodes on loopback addresses of this machine, started one after the other and stopped by pid."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir).resolve()
        self.state_file = self.run_dir / "cluster.json"
        self.token_file = self.run_dir / "ray_auth_token"
        self.log_dir = self.run_dir / "logs"

    # -- state --

    def state(self) -> ClusterState | None:
        """The recorded cluster, None when none was started from this run dir."""
        try:
            return ClusterState.from_json(self.state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def env(self, state: ClusterState | None = None) -> dict[str, str]:
        """The environment every node and driver of this cluster needs: token auth with our token, and Serve's
        settings of the cluster's tuning (`state`, else the recorded one)."""
        env = dict(os.environ)
        env.pop("RAY_AUTH_TOKEN", None)
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(self.token_file),
                   RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S=str(DRAIN_TIMEOUT_S))
        state = state or self.state()
        if state is not None and state.serve_ports is not None and state.tuning is not None:
            # HAProxy's files go to Ray's short temp dir: its admin socket path (plus Serve's node id) must
            # stay under 97 bytes
            env.update(state.tuning.env(state.serve_ports, Path(state.temp_dir) / "haproxy"))
        return env

    def alive_nodes(self) -> list[Node]:
        """The recorded nodes whose `ray start` process still runs."""
        state = self.state()
        return [node for node in (state.nodes if state else []) if node.owned().live() is not None]

    # -- start / stop --

    def start(
        self, ips: list[str], num_cpus: int = 1, base_port: int | None = None, http_port: int = HTTP_PORT,
        tuning: Tuning | None = None,
    ) -> ClusterState:
        """Start the head on `ips[0]`, then each other node on its own address, with Serve's settings of `tuning`
        (None: Serve as Ray ships it); return the recorded state."""
        if self.alive_nodes():
            raise ServerStartError(f"a Ray cluster is already running from {self.run_dir}")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.token_file.write_text(secrets.token_hex(32), encoding="utf-8")
        self.token_file.chmod(0o600)
        nodes, serve_ports = plan_ports(ips, base_port)
        state = ClusterState(nodes, tempfile.mkdtemp(prefix="ray-", dir="/tmp"), num_cpus, http_port, serve_ports,
                             tuning)
        try:
            for node in state.nodes:
                self._start_node(node, state)
        except BaseException:
            self._stop_nodes(state)
            raise
        return state

    def restart_node(self, name: str) -> Node:
        """Start the recorded node `name` again (after it was lost), with its address and ports; ServerStartError
        when the cluster or the node is unknown, or the node still runs."""
        state = self.state()
        node = next((n for n in state.nodes if n.name == name), None) if state else None
        if node is None:
            raise ServerStartError(f"no node {name!r} recorded in {self.state_file}")
        if node.owned().live() is not None:
            raise ServerStartError(f"node {name} ({node.ip}) still runs (pid {node.pid})")
        self._start_node(node, state)
        return node

    def _start_node(self, node: Node, state: ClusterState) -> None:
        log = self.log_dir / f"{node.name}.log"
        offset = log.stat().st_size if log.exists() else 0  # a node started again appends to its log
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "ray.scripts.scripts", "start",
                 *node.start_args(state.address, state.num_cpus, state.temp_dir)],
                stdout=out, stderr=subprocess.STDOUT, env=self.env(state), start_new_session=True,
            )
        node.pid = proc.pid
        self.state_file.write_text(state.to_json(), encoding="utf-8")
        started = poll_until(lambda: _ready(log, offset) or proc.poll() is not None, NODE_START_TIMEOUT_S,
                             every_s=0.5)
        if proc.poll() is not None or not started:
            raise ServerStartError(f"ray node {node.name} ({node.ip}) did not start:\n{tail(log, 30)}")

    def stop(self) -> bool:
        """Stop every node of this run dir (workers first, the head last); False when none was running."""
        state = self.state()
        if state is None:
            return False
        running = bool(self.alive_nodes())
        self._stop_nodes(state)
        self.state_file.unlink(missing_ok=True)
        return running

    def _stop_nodes(self, state: ClusterState) -> None:
        for node in reversed(state.nodes):
            node.owned().stop(DRAIN_TIMEOUT_S + 30)  # SIGTERM: the node drains, then stops its processes
        shutil.rmtree(state.temp_dir, ignore_errors=True)


def _ready(log: Path, offset: int = 0) -> bool:
    """Whether `ray start` wrote its ready line to `log` after byte `offset`."""
    try:
        with open(log, "rb") as text:
            text.seek(offset)
            return READY_LINE in text.read().decode("utf-8", errors="replace")
    except OSError:
        return False
