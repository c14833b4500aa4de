"""`LocalServer`: one TorchServe 0.12 whose files all live in its own run directory (toolkit.server.rundir).

`LocalServer` is the one way this project starts TorchServe (`make serve`, e2e tests, benchmarks, soak).
Several can run side by side, each in its own run directory on its own ports.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

from toolkit.archive.mar import model_name
from toolkit.client.auth import Keys, read_keys
from toolkit.client.rest import InferenceClient, ManagementClient
from toolkit.errors import KeyFileError, ServerAlreadyRunningError, ServerStartError
from toolkit.paths import CONFIG_PROPERTIES, MODEL_STORE
from toolkit.polling import poll_until
from toolkit.process import check_ports_free, tail
from toolkit.properties import LOOPBACK, Ports, Urls, read_properties
from toolkit.server.health import health_problem
from toolkit.server.java import find_java
from toolkit.server.rundir import PID_FILE_NAME, RunDir

__all__ = ["PID_FILE_NAME", "READY_TIMEOUT_S", "LocalServer"]

READY_TIMEOUT_S = 180.0  # JVM start plus one Python import per worker, on 2 busy cores


class LocalServer(RunDir):
    """One TorchServe whose files, pid file and keys all live in `run_dir` (a RunDir plus its process).

    config: the template config.properties (only addresses, ports and model_store are changed).
    model_store: directory of .mar files. models: what to load at start, TorchServe `--models` entries
    (`file.mar`, named by its manifest, or `name=file.mar`); empty for none.
    ports: the five listener ports; None (the default, also the CLI's) takes the config's own.
    bind: the address of the inference and management listeners, metrics_bind that of the metrics one (default
    `bind`); the URLs the toolkit itself uses are always on 127.0.0.1.
    `with server.running(timeout_s):` starts, waits until ready and stops on exit.
    """

    def __init__(
        self,
        run_dir: str | Path,
        config: str | Path = CONFIG_PROPERTIES,
        model_store: str | Path = MODEL_STORE,
        models: Sequence[str] = (),
        ports: Ports | None = None,
        bind: str = LOOPBACK,
        metrics_bind: str | None = None,
    ) -> None:
        super().__init__(run_dir)
        self.config = Path(config).resolve()
        self.model_store = Path(model_store).resolve()
        self.models = list(models)
        self.ports = ports or Ports.from_config(self.config)
        self.bind = bind
        self.metrics_bind = metrics_bind or bind

    @property
    def urls(self) -> Urls:
        """Listener URLs of this server (all on 127.0.0.1)."""
        return Urls.for_ports(self.ports)

    def read_keys(self) -> Keys:
        """The server's inference and management keys (KeyFileError until TorchServe wrote them). Empty keys
        when the config sets `disable_token_authorization=true` (the KServe layout): TorchServe then writes no
        key file and checks no header."""
        if read_properties(self.config).get("disable_token_authorization", "").strip().lower() == "true":
            return Keys(inference="", management="")
        return read_keys(self.key_file)

    def inference_client(self, timeout_s: float = 60.0) -> InferenceClient:
        """A REST inference client of this server, with its key."""
        return InferenceClient(self.urls.inference, self.read_keys().inference, timeout_s)

    def management_client(self, timeout_s: float = 300.0) -> ManagementClient:
        """A REST management client of this server, with its key."""
        return ManagementClient(self.urls.management, self.read_keys().management, timeout_s)

    def expected_models(self) -> set[str]:
        """Names of the models given at start (from `name=` or the archive's manifest)."""
        names = {e.split("=", 1)[0] if "=" in e else model_name(self.model_store / e) for e in self.models}
        return {name for name in names if name}

    # -- start --

    def _start_args(self, foreground: bool) -> list[str]:
        """The launcher's `--start` command for this server; `foreground`: it waits for the JVM."""
        args = ["--start", *(["--foreground"] if foreground else []), "--ncs", "--ts-config", str(self.config_path),
                "--model-store", str(self.model_store)]
        return self.launcher(*args, *(["--models", *self.models] if self.models else []))

    def config_overrides(self) -> dict[str, str]:
        """The keys of the template config this server replaces: its listeners and model_store."""
        listeners = self.ports.overrides(bind=self.bind, metrics_bind=self.metrics_bind)
        return {**listeners, "model_store": str(self.model_store)}

    def _prepare(self) -> None:
        """Check java, ports and store; clear files of an earlier run and write the run dir's config."""
        find_java()
        proc = self.frontend()
        if proc is not None:
            raise ServerAlreadyRunningError(f"TorchServe is already running from {self.run_dir} (pid {proc.pid})")
        if not self.model_store.is_dir():
            raise ServerStartError(f"model store not found: {self.model_store}")
        check_ports_free(self.ports.all())
        self.prepare(self.config, self.config_overrides())

    def start(self) -> LocalServer:
        """Launch TorchServe in the background (returns once the JVM is spawned; see wait_ready)."""
        self._prepare()
        with open(self.log_dir / "stdout.log", "ab") as out:
            done = subprocess.run(
                self._start_args(foreground=False), cwd=self.run_dir, env=self.env(), stdout=out,
                stderr=subprocess.STDOUT, timeout=120, check=False,
            )
        if done.returncode != 0 or self.frontend_pid is None:
            raise ServerStartError(
                f"torchserve --start failed (exit {done.returncode})\n{tail(self.log_dir / 'stdout.log', 20)}"
            )
        return self

    def start_foreground(self) -> subprocess.Popen:
        """`torchserve --start --foreground` as a child: it writes the pid file and waits for the JVM. Output goes
        to this process's stdout; TorchServe's log files go to logs/."""
        self._prepare()
        return subprocess.Popen(self._start_args(foreground=True), cwd=self.run_dir, env=self.env())

    # -- readiness --

    def health_problem(self) -> str | None:
        """None when ready (see toolkit.server.health), else what is still missing."""
        try:
            keys = self.read_keys()
        except KeyFileError as exc:
            return str(exc)
        return health_problem(self.urls, keys, self.expected_models())

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Block until ready. ServerStartError with the log tail when the frontend exits or `timeout_s` passes."""
        last: list[str | None] = [None]

        def ready_or_gone() -> bool:
            if not self.is_running():
                raise ServerStartError(f"TorchServe in {self.run_dir} exited during start-up\n{self.log_tail()}")
            last[0] = self.health_problem()
            return last[0] is None

        if not poll_until(ready_or_gone, timeout_s, every_s=0.5):
            raise ServerStartError(
                f"TorchServe in {self.run_dir} not ready after {timeout_s:g} s: {last[0]}\n{self.log_tail()}"
            )

    # -- stop --

    def stop(self, timeout_s: float = 60.0) -> None:
        """Stop this run dir's server: `torchserve --stop` (same TMPDIR/cwd), wait `timeout_s` for the frontend
        and its workers to exit, then terminate/kill by pid what is still alive of them."""
        if self.owned_frontend().stop(timeout_s, ask=lambda _frontend: self.launcher_stop()):
            self.key_file.unlink(missing_ok=True)
        self.pid_file.unlink(missing_ok=True)

    @contextlib.contextmanager
    def running(self, timeout_s: float = READY_TIMEOUT_S) -> Iterator[LocalServer]:
        """Start, wait until ready (stopping again if that fails), yield, and stop on exit."""
        self.start()
        try:
            self.wait_ready(timeout_s)
            yield self
        finally:
            self.stop()
