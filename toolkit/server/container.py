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
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from toolkit.archive.mar import store_archives
from toolkit.errors import SettingsError, exit_status
from toolkit.paths import CONFIG_PROPERTIES, MODEL_STORE
from toolkit.properties import ALL_INTERFACES, LOOPBACK
from toolkit.server.drain import DRAIN_QUIET_S, drain_and_stop
from toolkit.server.local import LocalServer

DEFAULT_RUN_DIR = "/app/run"
DRAIN_MARKER = ".draining"
# The container's drain deadline when TS_DRAIN_DEADLINE_S is unset (the Dockerfile and docker-compose.yml set
# the same value; scripts/image-serve.sh passes its own DRAIN_DEADLINE_S, default the same). Shorter than
# `make stop`'s (drain.DRAIN_DEADLINE_S): an orchestrator's stop grace period must cover it.
CONTAINER_DRAIN_DEADLINE_S = 20.0
CHILD_EXIT_TIMEOUT_S = 30.0  # after the drain: `torchserve --start --foreground` exits once its JVM has


class ContainerSettings(BaseModel):
    """The container's settings, read once from its environment (`from_env`); a value a setting cannot take is
    refused, never replaced by the default.

    TS_RUN_DIR            run dir (key_file.json, logs/, unpacked models)              default /app/run
    TS_METRICS_BIND       address of the metrics listener (it has no token)            default 127.0.0.1
    TS_DRAIN_DEADLINE_S   seconds a SIGTERM waits for queued and running requests      default 20
    TS_DRAIN_QUIET_S      seconds without activity that mean idle                      default 2
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    run_dir: Path = Field(Path(DEFAULT_RUN_DIR), alias="TS_RUN_DIR")
    metrics_bind: str = Field(LOOPBACK, alias="TS_METRICS_BIND", min_length=1)
    drain_deadline_s: float = Field(CONTAINER_DRAIN_DEADLINE_S, alias="TS_DRAIN_DEADLINE_S", ge=0,
                                    allow_inf_nan=False)
    drain_quiet_s: float = Field(DRAIN_QUIET_S, alias="TS_DRAIN_QUIET_S", ge=0, allow_inf_nan=False)

    @field_validator("run_dir", mode="before")
    @classmethod
    def _a_folder(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            raise ValueError("an empty path names no folder")
        return value

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ContainerSettings:
        """The settings `environ` (default: this process's environment) gives; SettingsError naming the first
        variable whose value is refused, and that value."""
        values = dict(os.environ if environ is None else environ)
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            error = exc.errors()[0]
            name = str(error["loc"][0])
            raise SettingsError(f"{name}={values.get(name, '')!r} refused: {error['msg']} "
                                f"(unset {name} for its default)") from None


class ContainerServer(LocalServer):
    """The LocalServer of the container: listeners on every interface (metrics on `settings.metrics_bind`),
    TorchServe run in the foreground as a child, and a drain marker that turns the health check unhealthy."""

    def __init__(self, settings: ContainerSettings, **kwargs) -> None:
        super().__init__(settings.run_dir, bind=ALL_INTERFACES, metrics_bind=settings.metrics_bind, **kwargs)
        self.settings = settings

    @property
    def drain_marker(self) -> Path:
        return self.run_dir / DRAIN_MARKER

    def start_foreground(self) -> subprocess.Popen:
        """Clear an earlier drain marker, then LocalServer.start_foreground."""
        self.drain_marker.unlink(missing_ok=True)
        return super().start_foreground()


def container_server(settings: ContainerSettings | None = None) -> ContainerServer:
    """The server of this container: every archive of the model store, with `settings` (default: from the
    environment)."""
    return ContainerServer(
        settings or ContainerSettings.from_env(),
        config=CONFIG_PROPERTIES,
        model_store=MODEL_STORE,
        models=[path.name for path in store_archives(MODEL_STORE)],
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
    deadline = server.settings.drain_deadline_s
    print(f"signal {received[0]}: draining (deadline {deadline:g} s), then stopping TorchServe", flush=True)
    report = drain_and_stop(server, deadline, server.settings.drain_quiet_s)
    try:
        child.wait(timeout=CHILD_EXIT_TIMEOUT_S)
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
    return exit_status(serve if args.command == "serve" else health)


if __name__ == "__main__":
    sys.exit(main())
