"""Command line of the local TorchServe (what `make serve`, `make stop` and `make status` run).

    python -m toolkit.server start  [--run-dir .ts_run] [--config ...] [--model-store ...] [--models A.mar ...]
                                    [--free-ports] [--timeout 180]
    python -m toolkit.server stop   [--run-dir .ts_run] [--drain-deadline 30] [--quiet 2]
    python -m toolkit.server status [--run-dir .ts_run]
    python -m toolkit.server ready  [--run-dir .ts_run]

Defaults are those of `LocalServer`: the project's config.properties (its own ports), model_store/, .ts_run/.
`stop` drains first (see toolkit.server.drain; `--drain-deadline 0` stops at once). `status` exits 3 when no
server runs from the run dir; `ready` exits 0 only when every registered model version has its minWorkers
READY (the readiness probe), 1 otherwise, printing what is missing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from toolkit.archive.mar import store_archives
from toolkit.client.management import all_versions
from toolkit.errors import PortInUseError, ToolkitError, exit_status
from toolkit.paths import CONFIG_PROPERTIES, MODEL_STORE, RUN_DIR
from toolkit.process import free_ports
from toolkit.server.drain import DRAIN_DEADLINE_S, DRAIN_QUIET_S, drain_and_stop
from toolkit.server.local import READY_TIMEOUT_S, LocalServer

EXIT_NOT_RUNNING = 3


def _server_for(args: argparse.Namespace) -> LocalServer:
    store = Path(args.model_store)
    models = args.models if args.models is not None else [path.name for path in store_archives(store)]
    return LocalServer(args.run_dir, args.config, store, models, ports=free_ports() if args.free_ports else None)


def _print_urls(server: LocalServer) -> None:
    urls = server.urls
    print(f"  inference  {urls.inference}\n  management {urls.management}\n  metrics    {urls.metrics}")
    print(f"  gRPC       inference {urls.grpc_inference}, management {urls.grpc_management}")
    print(f"  key file   {server.key_file}\n  logs       {server.log_dir}")


def cmd_start(args: argparse.Namespace) -> int:
    server = _server_for(args)
    pid = server.running_pid()
    if pid is not None:
        print(f"TorchServe is already running from {server.run_dir} (pid {pid}); not starting a second one.")
        _print_urls(server)
        return 0
    print(f"starting TorchServe from {server.run_dir} with models: {', '.join(server.models) or 'none'}")
    try:
        server.start()
        server.wait_ready(args.timeout)
    except ToolkitError as exc:
        hint = " (another server holds it; this command only manages the one in --run-dir)"
        print(f"error: {exc}{hint if isinstance(exc, PortInUseError) else ''}", file=sys.stderr)
        server.stop()
        return exc.exit_code
    print(f"TorchServe is ready (pid {server.frontend_pid})")
    _print_urls(server)
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    server = _server_for(args)
    pid = server.running_pid()
    if pid is None:
        print(f"no TorchServe running from {server.run_dir}")
        return 0
    report = drain_and_stop(server, args.drain_deadline, args.quiet)
    verdict = "idle" if report.idle else f"deadline of {args.drain_deadline:g} s reached"
    print(f"TorchServe (pid {pid}) from {server.run_dir} stopped after {report.waited_s:g} s of draining ({verdict})")
    print(asdict(report))
    return 0


def _worker_lines(server: LocalServer) -> list[str]:
    lines = []
    with server.management_client(timeout_s=10) as mgmt:
        for desc in all_versions(mgmt):
            workers = desc.get("workers", [])
            ready = sum(w.get("status") == "READY" for w in workers)
            pids = ",".join(str(w.get("pid")) for w in workers) or "-"
            lines.append(
                f"  {desc['modelName']} {desc['modelVersion']}: {ready}/{len(workers)} workers READY "
                f"(min {desc['minWorkers']}, max {desc['maxWorkers']}, batch {desc['batchSize']}), pids {pids}"
            )
    return lines or ["  no models registered"]


def cmd_status(args: argparse.Namespace) -> int:
    server = _server_for(args)
    if not server.is_running():
        print(f"no TorchServe running from {server.run_dir}")
        return EXIT_NOT_RUNNING
    print(f"TorchServe running from {server.run_dir} (pid {server.frontend_pid})")
    _print_urls(server)
    print("models:\n" + "\n".join(_worker_lines(server)))
    return 0


def cmd_ready(args: argparse.Namespace) -> int:
    server = _server_for(args)
    problem = server.health_problem() if server.is_running() else f"no TorchServe running from {server.run_dir}"
    print("ready" if problem is None else f"not ready: {problem}")
    return 0 if problem is None else 1


COMMANDS = {"start": cmd_start, "stop": cmd_stop, "status": cmd_status, "ready": cmd_ready}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m toolkit.server", description="Local TorchServe lifecycle.")
    parser.add_argument("command", choices=list(COMMANDS))
    parser.add_argument("--run-dir", default=str(RUN_DIR), help="server's run directory")
    parser.add_argument("--config", default=str(CONFIG_PROPERTIES), help="template config.properties")
    parser.add_argument("--model-store", default=str(MODEL_STORE), help="directory of .mar files")
    parser.add_argument("--models", nargs="*", default=None, help="archives to load (default: every *.mar)")
    parser.add_argument("--free-ports", action="store_true", help="free loopback ports instead of the config's")
    parser.add_argument("--timeout", type=float, default=READY_TIMEOUT_S, help="start: seconds to wait for ready")
    parser.add_argument("--drain-deadline", type=float, default=DRAIN_DEADLINE_S, help="stop: seconds to wait for idle")
    parser.add_argument("--quiet", type=float, default=DRAIN_QUIET_S,
                        help="stop: seconds without activity that mean idle")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return exit_status(lambda: COMMANDS[args.command](args))


if __name__ == "__main__":
    sys.exit(main())
