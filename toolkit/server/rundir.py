"""The files of one TorchServe run directory, the frontend process that belongs to it, and its launcher.

    <run_dir>/config.properties    the template config with addresses, ports, model_store (and relative
                                   metrics_config and log4j2 paths, made absolute) replaced
    <run_dir>/.model_server.pid    frontend pid (`torchserve --start` writes it to $TMPDIR = run dir,
                                   and `torchserve --stop` reads it from there)
    <run_dir>/key_file.json        token keys (TorchServe writes them to its working directory = run dir)
    <run_dir>/logs/                ts_log.log, model_log.log, access_log.log, metrics logs, stdout.log
    <run_dir>/models/, .ts.sock.*  unpacked archives and worker sockets (java.io.tmpdir, from $TEMP)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psutil

from toolkit.paths import KEY_FILE_NAME, ROOT
from toolkit.process import Fingerprint, OwnedProcess, read_pid_file, tail
from toolkit.properties import read_properties, rewrite_properties, rooted_paths

PID_FILE_NAME = ".model_server.pid"
FRONTEND_CLASS = "org.pytorch.serve.ModelServer"


class RunDir:
    """Where one TorchServe keeps everything it writes; several run side by side in different ones."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir).resolve()

    @property
    def config_path(self) -> Path:
        """The rewritten config.properties the server runs with."""
        return self.run_dir / "config.properties"

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"

    @property
    def key_file(self) -> Path:
        return self.run_dir / KEY_FILE_NAME

    @property
    def pid_file(self) -> Path:
        return self.run_dir / PID_FILE_NAME

    @property
    def frontend_pid(self) -> int | None:
        """The pid in the run dir's pid file, None when there is none."""
        return read_pid_file(self.pid_file)

    def owned_frontend(self) -> OwnedProcess:
        """The frontend as recorded: the pid file's pid, which is ours only while it is a ModelServer JVM whose
        working directory is this run dir (a stale pid file, or a pid reused by another process, is not)."""
        return OwnedProcess.from_pid_file(self.pid_file, Fingerprint((FRONTEND_CLASS,), cwd=self.run_dir))

    def frontend(self) -> psutil.Process | None:
        """The live TorchServe frontend of this run dir, None when none runs."""
        return self.owned_frontend().live()

    def running_pid(self) -> int | None:
        """The frontend pid while this run dir's server is alive, else None."""
        proc = self.frontend()
        return proc.pid if proc is not None else None

    def is_running(self) -> bool:
        """True while this run dir's frontend is alive."""
        return self.running_pid() is not None

    def log_tail(self, lines: int = 40) -> str:
        """Last lines of ts_log.log and model_log.log, for error messages."""
        return "\n".join(f"--- {n} ---\n{tail(self.log_dir / n, lines)}" for n in ("ts_log.log", "model_log.log"))

    def env(self) -> dict[str, str]:
        """The environment TorchServe's launcher runs with so that all it writes lands here."""
        env = dict(os.environ)
        env.pop("TS_CONFIG_FILE", None)  # would take precedence over --ts-config
        env.update(
            TMPDIR=str(self.run_dir),  # launcher's pid file location (tempfile.gettempdir())
            TEMP=str(self.run_dir),  # -> -Djava.io.tmpdir: unpacked models, worker sockets
            LOG_LOCATION=str(self.log_dir),
            METRICS_LOCATION=str(self.log_dir),
        )
        return env

    def launcher(self, *args: str) -> list[str]:
        """The `torchserve` launcher of this interpreter's environment with `args` (run it with cwd = run dir and
        `env()`)."""
        return [sys.executable, "-m", "ts.model_server", *args]

    def launcher_stop(self, timeout_s: float = 60.0) -> None:
        """`torchserve --stop` for this run dir's server (it reads the pid file from TMPDIR = run dir); a launcher
        stuck past `timeout_s` is left to the caller's escalation by pid."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run(self.launcher("--stop"), cwd=self.run_dir, env=self.env(), capture_output=True,
                           timeout=timeout_s, check=False)

    def prepare(self, template: Path, overrides: dict[str, str]) -> None:
        """Clear what an earlier run left (key file, unpacked archives) and write this run's config: the template
        with the keys of `overrides` replaced (listeners, model_store), and its relative `metrics_config` and
        log4j2 file made absolute against the project root (`rooted_paths`: they would be resolved against the
        run dir)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.key_file.unlink(missing_ok=True)  # a stale one would be read before the new one is written
        shutil.rmtree(self.run_dir / "models", ignore_errors=True)
        overrides = {**overrides, **rooted_paths(read_properties(template), ROOT)}
        self.config_path.write_text(rewrite_properties(template.read_text(encoding="utf-8"), overrides), "utf-8")
