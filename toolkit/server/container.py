"""Entrypoint of the container image (deploy/container/Dockerfile): TorchServe in the foreground, drained on SIGTERM.

    python -m toolkit.server.container serve     the image's command (under tini, PID 1)
    python -m toolkit.server.container health    the image's HEALTHCHECK: 0 only when ready and not draining

`serve` starts TorchServe 0.12 with every model_store/*.mar as its child (`torchserve --start --foreground`),
from the run dir TS_RUN_DIR (default /app/run: key_file.json, logs/, unpacked models; mount a host folder
there to read the key). Inside the container the listeners bind 0.0.0.0 (the user publishes the ports) with
token auth on as in config/config.properties; the metrics listener, which TorchServe serves WITHOUT a token,
binds TS_METRICS_BIND (default 127.0.0.1: reachable only inside the container; docker-compose.yml sets
0.0.0.0 so Prometheus scrapes it over the compose network, without publishing it).

On SIGTERM (or SIGINT): the health check turns unhealthy at once (a `.draining` file in the run dir), so a
load balancer or orchestrator stops routing here; then toolkit.server.drain waits until nothing is queued or
running (at most TS_DRAIN_DEADLINE_S, default 20 s), stops TorchServe and exits 0. TorchServe 0.12 cannot
close its listener while it finishes accepted work (see toolkit.server.drain): requests that still arrive
during the drain are answered too; what is in flight at the deadline is cut. Give the engine a stop timeout
above the deadline (`podman stop -t 40`; scripts/image-stop.sh does). Exit status: 0 after a drain, TorchServe's
own (or 1) when it exits by itself.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from toolkit.errors import ToolkitError
from toolkit.paths import CONFIG_PROPERTIES, MODEL_STORE
from toolkit.properties import rewrite_properties
from toolkit.server.drain import drain_and_stop
from toolkit.server.local import LocalServer

DEFAULT_RUN_DIR = "/app/run"
DRAIN_MARKER = ".draining"
ALL_INTERFACES = "0.0.0.0"


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


class ContainerServer(LocalServer):
    """A LocalServer whose listeners bind every interface of the container (metrics: `metrics_bind`), and
    which runs TorchServe in the foreground as a child process."""

    def __init__(self, run_dir: str | Path, metrics_bind: str = "127.0.0.1", **kwargs) -> None:
        super().__init__(run_dir, **kwargs)
        self.metrics_bind = metrics_bind

    @property
    def drain_marker(self) -> Path:
        return self.run_dir / DRAIN_MARKER

    def bind_overrides(self) -> dict[str, str]:
        """config.properties addresses on all interfaces (metrics on `metrics_bind`), same ports."""
        p = self.ports
        return {
            "inference_address": f"http://{ALL_INTERFACES}:{p.inference}",
            "management_address": f"http://{ALL_INTERFACES}:{p.management}",
            "metrics_address": f"http://{self.metrics_bind}:{p.metrics}",
            "grpc_inference_address": ALL_INTERFACES,
            "grpc_management_address": ALL_INTERFACES,
        }

    def _prepare(self) -> None:
        super()._prepare()
        self.drain_marker.unlink(missing_ok=True)
        text = rewrite_properties(self.config_path.read_text(encoding="utf-8"), self.bind_overrides())
        self.config_path.write_text(text, encoding="utf-8")

    def start_foreground(self) -> subprocess.Popen:
        """`torchserve --start --foreground` as a child: it writes the pid file and waits for the JVM.
        Output goes to this process's stdout (the container log); TorchServe's log files go to logs/."""
        self._prepare()
        args = ["--start", "--foreground", "--ncs", "--ts-config", str(self.config_path),
                "--model-store", str(self.model_store)]
        if self.models:
            args += ["--models", *self.models]
        return subprocess.Popen(self._launcher(*args), cwd=self.run_dir, env=self.env())


def container_server() -> ContainerServer:
    """The server of this container, from the environment (TS_RUN_DIR, TS_METRICS_BIND)."""
    store = MODEL_STORE
    return ContainerServer(
        os.environ.get("TS_RUN_DIR", DEFAULT_RUN_DIR),
        metrics_bind=os.environ.get("TS_METRICS_BIND", "127.0.0.1"),
        config=CONFIG_PROPERTIES,
        model_store=store,
        models=sorted(p.name for p in store.glob("*.mar")),
    )


def serve() -> int:
    """Run TorchServe until it exits or a SIGTERM/SIGINT has drained and stopped it."""
    server = container_server()
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)
        server.drain_marker.touch()  # unhealthy from now on
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"starting TorchServe from {server.run_dir} with models: {', '.join(server.models) or 'none'}", flush=True)
    child = server.start_foreground()
    while not stop.is_set():
        if child.poll() is not None:
            print(f"TorchServe exited by itself (exit {child.returncode})\n{server.log_tail()}", file=sys.stderr)
            return child.returncode or 1
        stop.wait(0.5)
    deadline = _env_float("TS_DRAIN_DEADLINE_S", 20.0)
    print(f"signal {received[0]}: draining (deadline {deadline:g} s), then stopping TorchServe", flush=True)
    report = drain_and_stop(server, deadline, _env_float("TS_DRAIN_QUIET_S", 2.0))
    try:
        child.wait(timeout=30)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
    verdict = "idle" if report.idle else "deadline reached"
    print(f"TorchServe stopped after {report.waited_s:g} s of draining ({verdict}): {asdict(report)}", flush=True)
    return 0


def health() -> int:
    """0 when TorchServe runs, is not draining and every model version has its minWorkers READY."""
    server = container_server()
    if server.drain_marker.exists():
        problem: str | None = "draining (SIGTERM received)"
    elif not server.is_running():
        problem = f"no TorchServe running from {server.run_dir}"
    else:
        problem = server.health_problem()
    print("ready" if problem is None else f"not ready: {problem}")
    return 0 if problem is None else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m toolkit.server.container", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["serve", "health"], nargs="?", default="serve")
    args = parser.parse_args(argv)
    try:
        return serve() if args.command == "serve" else health()
    except ToolkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
