"""Command line of the Ray Serve engine (what `make ray-serve`, `make ray-stop` and `make ray-status` run).

    python -m toolkit.engines.ray start  [--run-dir .ray_run] [--model-store model_store] [--archives A.mar ...]
                                         [--ips 127.0.0.2 127.0.0.3] [--cpus-per-node 1] [--http-port 8000]
                                         [--base-port 6379 | --free-ports] [--tune key=value ...]
    python -m toolkit.engines.ray stop   [--run-dir .ray_run]
    python -m toolkit.engines.ray status [--run-dir .ray_run]
    python -m toolkit.engines.ray join   [--run-dir .ray_run] --node node-1
    python -m toolkit.engines.ray spread [--run-dir .ray_run]

`start` starts the nodes one after the other (the first address is the head), deploys every archive of the
model store behind TorchServe's API on http://127.0.0.1:<http-port>, writes `<run-dir>/key_file.json`
(TorchServe's shape, mode 0600) and returns once every deployment runs. With RAY_ADDRESS set it starts no
node and deploys on that cluster instead (a real cluster: its nodes share the archives' paths; Serve's Python
proxy is the front there unless `--tune front=...` says otherwise). `--tune` sets Serve's switches
(toolkit.engines.ray.tuning.Tuning; the defaults are the measured best). `stop` takes the applications down
and stops the nodes this run dir started, by pid. `status` exits 3 when none runs. `join` starts a lost node
of this run dir again and spreads the replicas over it; `spread` only spreads (Serve never moves a running
replica: the replicas that moved to the surviving nodes stay there until rolled out again).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from toolkit.archive.mar import Archive, store_archives
from toolkit.engines.ray.cluster import HTTP_PORT, LocalRayCluster
from toolkit.engines.ray.serving import (
    SERVED_FILE,
    Served,
    alive_ips,
    deploy,
    disconnect,
    replica_actors,
    replicas,
    spread,
    undeploy,
)
from toolkit.engines.ray.tuning import Tuning
from toolkit.errors import ServerStartError, exit_status
from toolkit.paths import KEY_FILE_NAME, MODEL_STORE, ROOT
from toolkit.polling import poll_until

RUN_DIR = ROOT / ".ray_run"
EXIT_NOT_RUNNING = 3
NODE_JOIN_TIMEOUT_S = 60.0


def cmd_start(args: argparse.Namespace) -> int:
    cluster = LocalRayCluster(args.run_dir)
    store = Path(args.model_store)
    archives = store_archives(store, args.archives or None)
    if not archives:  # before any node starts
        raise ServerStartError(f"no archives to deploy in {store} (run `make archive` first)")
    external = os.environ.get("RAY_ADDRESS")
    tuning = Tuning.parse(["front=proxy", *(args.tune or [])] if external else args.tune)
    if tuning.request_timeout_s is None:  # the front waits as long as the slowest archive may take
        longest = max(Archive.open(path).config.response_timeout_s for path in archives)
        tuning = dataclasses.replace(tuning, request_timeout_s=longest)
    if external:
        address, env = external, dict(os.environ)
        env.setdefault("RAY_AUTH_MODE", "token")
        env.setdefault("RAY_AUTH_TOKEN_PATH", str(Path.home() / ".ray" / "auth_token"))
    elif cluster.alive_nodes():
        print(f"a Ray cluster is already running from {cluster.run_dir}; `stop` it first")
        return 1
    else:
        base = None if args.free_ports else args.base_port
        state = cluster.start(args.ips, args.cpus_per_node, base, args.http_port, tuning)
        address, env = state.address, cluster.env()
        print(f"Ray cluster: head {state.address}, nodes {', '.join(n.ip for n in state.nodes)}")
    try:
        deploy(env, address, archives, cluster.run_dir / KEY_FILE_NAME, args.http_port, tuning)
        Served([str(path.resolve()) for path in archives], args.http_port, tuning).save(cluster.run_dir)
    except BaseException:
        if not external:
            cluster.stop()
        raise
    print(f"serving {', '.join(a.name for a in archives)} on http://127.0.0.1:{args.http_port} "
          f"(key file {cluster.run_dir / KEY_FILE_NAME})")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    cluster = LocalRayCluster(args.run_dir)
    state = cluster.state()
    if state is not None and cluster.alive_nodes():
        try:
            undeploy(cluster.env(), state.address)
        except Exception as exc:  # the nodes are stopped whatever Serve says
            print(f"serve shutdown failed ({exc}); stopping the nodes anyway", file=sys.stderr)
    stopped = cluster.stop()
    (cluster.run_dir / KEY_FILE_NAME).unlink(missing_ok=True)
    (cluster.run_dir / SERVED_FILE).unlink(missing_ok=True)
    print(f"Ray cluster from {cluster.run_dir} {'stopped' if stopped else 'was not running'}")
    return 0


def cmd_spread(args: argparse.Namespace) -> int:
    cluster = LocalRayCluster(args.run_dir)
    served = Served.load(cluster.run_dir)
    external = os.environ.get("RAY_ADDRESS")
    state = cluster.state()
    if not external and state is None:
        raise ServerStartError(f"no Ray cluster recorded in {cluster.run_dir}")
    address, env = (external, dict(os.environ)) if external else (state.address, cluster.env())
    moved = spread(env, address, [Path(a) for a in served.archives], cluster.run_dir / KEY_FILE_NAME,
                   served.http_port, served.tuning)
    print(f"spread {', '.join(moved)} over the alive nodes" if moved else "no deployment crowded on one node")
    return 0


def cmd_join(args: argparse.Namespace) -> int:
    cluster = LocalRayCluster(args.run_dir)
    node = cluster.restart_node(args.node)
    state = cluster.state()
    if not poll_until(lambda: node.ip in alive_ips(cluster.env(), state.address), NODE_JOIN_TIMEOUT_S, every_s=0.5):
        raise ServerStartError(f"node {node.name} ({node.ip}) started but Ray does not count it alive")
    print(f"node {node.name} ({node.ip}) joined again (pid {node.pid})")
    return cmd_spread(args)


def cmd_status(args: argparse.Namespace) -> int:
    cluster = LocalRayCluster(args.run_dir)
    state, alive = cluster.state(), cluster.alive_nodes()
    if state is None or not alive:
        print(f"no Ray cluster running from {cluster.run_dir}")
        return EXIT_NOT_RUNNING
    if not args.json:
        print(f"Ray cluster from {cluster.run_dir}: head {state.address}; alive nodes {[n.ip for n in alive]}")
    with contextlib.redirect_stdout(sys.stderr):  # Ray's driver prints cluster events (a node marked dead)
        report = {"nodes": [n.ip for n in alive], "replicas": replicas(cluster.env(), state.address),
                  "actors": replica_actors(cluster.env(), state.address)}
        disconnect()
    print(json.dumps(report, indent=2) if args.json else _table(report))
    return 0


def _table(report: dict) -> str:
    lines = [f"{name}: {states}" for name, states in report["replicas"].items()]
    lines += [f"  {a['deployment']} replica pid {a['pid']} on {a['node_ip']}" for a in report["actors"]]
    return "\n".join(lines)


COMMANDS = {"start": cmd_start, "stop": cmd_stop, "status": cmd_status, "join": cmd_join, "spread": cmd_spread}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m toolkit.engines.ray", description="Ray Serve engine.")
    parser.add_argument("command", choices=list(COMMANDS))
    parser.add_argument("--run-dir", default=str(RUN_DIR), help="cluster state, keys and logs")
    parser.add_argument("--model-store", default=str(MODEL_STORE), help="directory of .mar files")
    parser.add_argument("--archives", nargs="*", help="archive file names to deploy (default: every *.mar)")
    parser.add_argument("--ips", nargs="+", default=["127.0.0.2", "127.0.0.3"], help="node addresses, head first")
    parser.add_argument("--cpus-per-node", type=int, default=1, help="logical CPUs of each node")
    parser.add_argument("--http-port", type=int, default=HTTP_PORT, help="Serve's HTTP proxy port on 127.0.0.1")
    parser.add_argument("--base-port", type=int, default=6379, help="first of the fixed ports the nodes bind")
    parser.add_argument("--free-ports", action="store_true", help="a free block of ports instead of --base-port")
    parser.add_argument("--tune", nargs="*", metavar="KEY=VALUE",
                        help="start: Serve's switches (toolkit.engines.ray.tuning.Tuning), e.g. front=proxy")
    parser.add_argument("--json", action="store_true", help="status: the report as JSON")
    parser.add_argument("--node", default="node-1", help="join: the recorded node to start again")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return exit_status(lambda: COMMANDS[args.command](args))


if __name__ == "__main__":
    sys.exit(main())
