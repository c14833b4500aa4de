"""Start, watch and stop one local TorchServe 0.12, scoped to its own run directory.

`LocalServer` is the one way this project starts TorchServe (`make serve`, e2e tests, benchmarks).
Everything a server writes lives in its run directory, so several can run side by side:

    <run_dir>/config.properties    the project config with addresses, ports and model_store replaced
    <run_dir>/.model_server.pid    frontend pid (`torchserve --start` writes it to $TMPDIR = run dir,
                                   and `torchserve --stop` reads it from there)
    <run_dir>/key_file.json        token keys (TorchServe writes them to its working directory = run dir)
    <run_dir>/logs/                ts_log.log, model_log.log, access_log.log, metrics logs, stdout.log
    <run_dir>/models/, .ts.sock.*  unpacked archives and worker sockets (java.io.tmpdir, from $TEMP)

Command line (used by scripts/serve.sh, stop.sh, status.sh):
    python -m toolkit.server start|stop|status [--run-dir DIR] ...
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from toolkit.auth import KEY_FILE_NAME, KeyFileError, Keys, read_keys
from toolkit.client_errors import ServerError
from toolkit.rest import InferenceClient, ManagementClient, ServerUnreachableError

JAVA_MISSING = "java not found: TorchServe needs Java 17. Install it with: apt-get install -y openjdk-17-jre-headless"
LOOPBACK = "127.0.0.1"
PID_FILE_NAME = ".model_server.pid"
FRONTEND_CLASS = "org.pytorch.serve.ModelServer"
DEFAULT_RUN_DIR_NAME = ".ts_run"
DEFAULT_CONFIG = Path("config") / "config.properties"
# Ports.free() draws from here: below Linux's default ephemeral range (32768-60999), above well-known ones.
FREE_PORT_RANGE = (20000, 32000)
_HANDED_OUT: set[int] = set()  # ports Ports.free() returned in this process, never handed out twice


class JavaNotFoundError(RuntimeError):
    """No java executable (JAVA_HOME/bin/java, else `java` on PATH). Message: JAVA_MISSING."""


class ServerStartError(RuntimeError):
    """TorchServe did not start or did not become healthy. The message carries the log tail."""


class ServerAlreadyRunningError(RuntimeError):
    """A TorchServe started from the same run directory is still alive."""


class PortInUseError(RuntimeError):
    """A port the server should listen on is already taken on 127.0.0.1."""


def project_root() -> Path:
    """The repository root (holding config/config.properties), else the current directory."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / DEFAULT_CONFIG).is_file() else Path.cwd()


def default_run_dir() -> Path:
    """Run directory of the `make serve` server."""
    return project_root() / DEFAULT_RUN_DIR_NAME


def default_key_file() -> Path:
    """key_file.json of the `make serve` server."""
    return default_run_dir() / KEY_FILE_NAME


# --- config.properties ---------------------------------------------------------------------------------


def _line_key(line: str) -> str | None:
    """The key of a `key=value` properties line; None for blanks and comments."""
    stripped = line.strip()
    if not stripped or stripped[0] in "#!" or "=" not in stripped:
        return None
    return stripped.split("=", 1)[0].strip()


def read_properties(path: str | Path) -> dict[str, str]:
    """The `key=value` pairs of a properties file, values stripped (no escape or continuation handling;
    our config uses neither for the keys read here)."""
    props: dict[str, str] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        key = _line_key(line)
        if key is not None:
            props[key] = line.split("=", 1)[1].strip()
    return props


def rewrite_properties(text: str, overrides: dict[str, str]) -> str:
    """`text` with the value of each key in `overrides` replaced (missing keys appended); every other
    line, comments included, kept verbatim."""
    out: list[str] = []
    seen: set[str] = set()
    for line in text.splitlines():
        key = _line_key(line)
        if key in overrides:
            out.append(f"{key}={overrides[key]}")
            seen.add(key)
        else:
            out.append(line)
    missing = [f"{key}={value}" for key, value in overrides.items() if key not in seen]
    if missing:
        out += ["", "# added by toolkit.server", *missing]
    return "\n".join(out) + "\n"


def _url_port(url: str) -> int:
    """The port of a TorchServe listener address like http://127.0.0.1:8080."""
    return int(url.rstrip("/").rsplit(":", 1)[1])


@dataclass(frozen=True)
class Ports:
    """The five TCP ports of one TorchServe."""

    inference: int
    management: int
    metrics: int
    grpc_inference: int
    grpc_management: int

    def all(self) -> list[int]:
        """The ports in field order."""
        return [self.inference, self.management, self.metrics, self.grpc_inference, self.grpc_management]

    @classmethod
    def from_properties(cls, props: dict[str, str]) -> Ports:
        """The ports a config names, with TorchServe's defaults for missing keys."""
        return cls(
            inference=_url_port(props.get("inference_address", "http://127.0.0.1:8080")),
            management=_url_port(props.get("management_address", "http://127.0.0.1:8081")),
            metrics=_url_port(props.get("metrics_address", "http://127.0.0.1:8082")),
            grpc_inference=int(props.get("grpc_inference_port", "7070")),
            grpc_management=int(props.get("grpc_management_port", "7071")),
        )

    @classmethod
    def free(cls) -> Ports:
        """Five distinct ports, bindable on 127.0.0.1 now, drawn at random from FREE_PORT_RANGE.

        Not from the kernel's ephemeral range (bind to port 0): the kernel hands recently released
        ports out again, so two servers started back to back collided, and outgoing connections take
        their local ports from that range. Ports already handed out by this process are never reused.
        """
        rng = random.Random()
        chosen: list[int] = []
        while len(chosen) < 5:
            port = rng.randrange(*FREE_PORT_RANGE)
            if port in _HANDED_OUT or port in chosen or not _bindable(port):
                continue
            chosen.append(port)
        _HANDED_OUT.update(chosen)
        return cls(*chosen)

    def overrides(self, model_store: Path) -> dict[str, str]:
        """config.properties values binding these ports on loopback and pointing at `model_store`."""
        return {
            "inference_address": f"http://{LOOPBACK}:{self.inference}",
            "management_address": f"http://{LOOPBACK}:{self.management}",
            "metrics_address": f"http://{LOOPBACK}:{self.metrics}",
            "grpc_inference_address": LOOPBACK,
            "grpc_inference_port": str(self.grpc_inference),
            "grpc_management_address": LOOPBACK,
            "grpc_management_port": str(self.grpc_management),
            "model_store": str(model_store),
        }


@dataclass(frozen=True)
class Urls:
    """Base URLs of the REST listeners and `host:port` of the gRPC ones."""

    inference: str
    management: str
    metrics: str
    grpc_inference: str
    grpc_management: str

    @classmethod
    def for_ports(cls, ports: Ports) -> Urls:
        return cls(
            inference=f"http://{LOOPBACK}:{ports.inference}",
            management=f"http://{LOOPBACK}:{ports.management}",
            metrics=f"http://{LOOPBACK}:{ports.metrics}",
            grpc_inference=f"{LOOPBACK}:{ports.grpc_inference}",
            grpc_management=f"{LOOPBACK}:{ports.grpc_management}",
        )

    @classmethod
    def from_config(cls, path: str | Path) -> Urls:
        """The URLs a config file names (always on 127.0.0.1, as LocalServer binds them)."""
        return cls.for_ports(Ports.from_properties(read_properties(path)))


def default_urls() -> Urls:
    """URLs of the `make serve` server: those of the project's config/config.properties (TorchServe's
    defaults when there is no such file)."""
    config = project_root() / DEFAULT_CONFIG
    return Urls.from_config(config) if config.is_file() else Urls.for_ports(Ports.from_properties({}))


# --- processes -----------------------------------------------------------------------------------------


def find_java() -> str:
    """The java executable TorchServe's launcher will run; JavaNotFoundError(JAVA_MISSING) if none."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = os.path.join(java_home, "bin", "java")
        found = candidate if os.access(candidate, os.X_OK) else None
    else:
        found = shutil.which("java")
    if not found:
        raise JavaNotFoundError(JAVA_MISSING)
    return found


def _alive(proc: psutil.Process) -> bool:
    """True while the process exists and is not a zombie (orphans may not be reaped promptly)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _wait_gone(procs: Sequence[psutil.Process], timeout_s: float) -> bool:
    """Poll until none of `procs` is alive; False if some still are after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while any(_alive(p) for p in procs):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _signal_all(procs: Sequence[psutil.Process], kill: bool) -> None:
    for proc in procs:
        if _alive(proc):
            with contextlib.suppress(psutil.Error):
                proc.kill() if kill else proc.terminate()


def _bindable(port: int) -> bool:
    """True when a TCP socket can bind 127.0.0.1:`port` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def check_ports_free(ports: Sequence[int]) -> None:
    """Raise PortInUseError naming the first port that cannot be bound on 127.0.0.1."""
    for port in ports:
        if not _bindable(port):
            raise PortInUseError(f"port {port} on {LOOPBACK} is already in use")


def archive_model_name(archive: Path) -> str | None:
    """The model name in a .mar's MAR-INF/MANIFEST.json, None if it cannot be read."""
    try:
        with zipfile.ZipFile(archive) as zf:
            manifest = json.loads(zf.read("MAR-INF/MANIFEST.json"))
        return str(manifest["model"]["modelName"])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"({path} not readable)"
    return "\n".join(text.splitlines()[-lines:])


class LocalServer:
    """One TorchServe whose files, pid file and keys all live in `run_dir`.

    config: the project config.properties (template; only addresses, ports and model_store are changed).
    model_store: directory of .mar files. models: what to load at start, TorchServe `--models` entries
    (`file.mar`, named by its manifest, or `name=file.mar`); empty for none.
    ports: "free" picks five free loopback ports at start; "config" uses the config file's ports.
    Use as a context manager (start + wait_healthy, stop on exit) or call start/wait_healthy/stop.
    """

    def __init__(
        self,
        config: str | Path,
        run_dir: str | Path,
        model_store: str | Path,
        models: Sequence[str] = (),
        ports: str = "free",
    ) -> None:
        if ports not in ("free", "config"):
            raise ValueError(f'ports must be "free" or "config", not {ports!r}')
        self.config = Path(config).resolve()
        self.run_dir = Path(run_dir).resolve()
        self.model_store = Path(model_store).resolve()
        self.models = list(models)
        self.port_mode = ports

    # -- files of the run dir --

    @property
    def config_path(self) -> Path:
        """The rewritten config.properties this server runs with."""
        return self.run_dir / "config.properties"

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"

    @property
    def key_file(self) -> Path:
        return self.run_dir / KEY_FILE_NAME

    @property
    def keys(self) -> Keys:
        """The server's inference and management keys (KeyFileError until TorchServe wrote them)."""
        return read_keys(self.key_file)

    @property
    def urls(self) -> Urls:
        """URLs of this server, read from its rewritten config (RuntimeError before the first start)."""
        if not self.config_path.is_file():
            raise RuntimeError(f"server in {self.run_dir} was never started (no {self.config_path})")
        return Urls.from_config(self.config_path)

    @property
    def frontend_pid(self) -> int | None:
        """The pid in the run dir's pid file, None when there is none."""
        try:
            return int((self.run_dir / PID_FILE_NAME).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _frontend_process(self) -> psutil.Process | None:
        """The live TorchServe frontend of this run dir: pid file pid, a ModelServer JVM, cwd = run dir."""
        pid = self.frontend_pid
        if pid is None:
            return None
        try:
            proc = psutil.Process(pid)
            ours = FRONTEND_CLASS in proc.cmdline() and Path(proc.cwd()).resolve() == self.run_dir
        except psutil.Error:
            return None
        return proc if ours and _alive(proc) else None

    def is_running(self) -> bool:
        """True while this run dir's frontend is alive."""
        return self._frontend_process() is not None

    def running_pid(self) -> int | None:
        """The frontend pid while this run dir's server is alive, else None (a stale pid file gives None)."""
        proc = self._frontend_process()
        return proc.pid if proc is not None else None

    def log_tail(self, lines: int = 40) -> str:
        """Last lines of ts_log.log and model_log.log, for error messages."""
        parts = [f"--- {name} ---\n{_tail(self.log_dir / name, lines)}" for name in ("ts_log.log", "model_log.log")]
        return "\n".join(parts)

    # -- clients --

    def inference_client(self, timeout_s: float = 60.0) -> InferenceClient:
        return InferenceClient(self.urls.inference, self.keys.inference, timeout_s)

    def management_client(self, timeout_s: float = 300.0) -> ManagementClient:
        return ManagementClient(self.urls.management, self.keys.management, timeout_s)

    def worker_pids(self, model: str, version: str | None = None) -> list[int]:
        """Pids of the workers of one model version (default version when None), from describe."""
        with self.management_client() as mgmt:
            (desc,) = mgmt.describe(model, version)
        return [int(w["pid"]) for w in desc.get("workers", []) if w.get("pid")]

    # -- start --

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("TS_CONFIG_FILE", None)  # would take precedence over --ts-config
        env.update(
            TMPDIR=str(self.run_dir),  # launcher's pid file location (tempfile.gettempdir())
            TEMP=str(self.run_dir),  # -> -Djava.io.tmpdir: unpacked models, worker sockets
            LOG_LOCATION=str(self.log_dir),
            METRICS_LOCATION=str(self.log_dir),
        )
        return env

    def _launcher(self, *args: str) -> list[str]:
        """The `torchserve` launcher of this interpreter's environment with `args`."""
        return [sys.executable, "-m", "ts.model_server", *args]

    def _write_config(self) -> Ports:
        ports = Ports.free() if self.port_mode == "free" else Ports.from_properties(read_properties(self.config))
        text = rewrite_properties(self.config.read_text(encoding="utf-8"), ports.overrides(self.model_store))
        self.config_path.write_text(text, encoding="utf-8")
        return ports

    def start(self) -> LocalServer:
        """Launch TorchServe in the background (returns once the JVM is spawned; see wait_healthy)."""
        find_java()
        proc = self._frontend_process()
        if proc is not None:
            raise ServerAlreadyRunningError(f"TorchServe is already running from {self.run_dir} (pid {proc.pid})")
        if not self.model_store.is_dir():
            raise ServerStartError(f"model store not found: {self.model_store}")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.key_file.unlink(missing_ok=True)  # a stale one would be read before the new one is written
        shutil.rmtree(self.run_dir / "models", ignore_errors=True)  # archives unpacked by an earlier run
        ports = self._write_config()
        check_ports_free(ports.all())
        args = ["--start", "--ncs", "--ts-config", str(self.config_path), "--model-store", str(self.model_store)]
        if self.models:
            args += ["--models", *self.models]
        with open(self.log_dir / "stdout.log", "ab") as out:
            done = subprocess.run(
                self._launcher(*args),
                cwd=self.run_dir,
                env=self._env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=120,
                check=False,
            )
        if done.returncode != 0 or self.frontend_pid is None:
            raise ServerStartError(
                f"torchserve --start failed (exit {done.returncode})\n{_tail(self.log_dir / 'stdout.log', 20)}"
            )
        return self

    # -- health --

    def expected_models(self) -> set[str]:
        """Names of the models given at start (from `name=` or the archive's manifest)."""
        names = set()
        for entry in self.models:
            name = entry.split("=", 1)[0] if "=" in entry else archive_model_name(self.model_store / entry)
            if name:
                names.add(name)
        return names

    def health_problem(self) -> str | None:
        """None when /ping says Healthy, every start model is registered and every registered model
        version that wants workers has at least one READY worker; else what is still missing."""
        try:
            keys = self.keys
            urls = self.urls
            with InferenceClient(urls.inference, keys.inference, 10) as inf:
                status = inf.ping()
            if status != "Healthy":
                return f"/ping says {status}"
            with ManagementClient(urls.management, keys.management, 10) as mgmt:
                return _models_problem(mgmt, self.expected_models())
        except (KeyFileError, ServerError, ServerUnreachableError) as exc:
            return str(exc)

    def wait_healthy(self, timeout_s: float = 180.0, poll_s: float = 0.5) -> None:
        """Block until `health_problem()` is None. ServerStartError with the log tail when the frontend
        exits or `timeout_s` passes."""
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.is_running():
                raise ServerStartError(f"TorchServe in {self.run_dir} exited during start-up\n{self.log_tail()}")
            problem = self.health_problem()
            if problem is None:
                return
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"TorchServe in {self.run_dir} not healthy after {timeout_s:g} s: {problem}\n{self.log_tail()}"
                )
            time.sleep(poll_s)

    # -- stop --

    def stop(self, timeout_s: float = 60.0) -> None:
        """Stop this run dir's server: `torchserve --stop` (same TMPDIR/cwd), wait for the frontend to
        exit, then terminate/kill by pid only what is still alive of the frontend and its workers."""
        proc = self._frontend_process()
        if proc is None:
            (self.run_dir / PID_FILE_NAME).unlink(missing_ok=True)
            return
        family = [proc, *proc.children(recursive=True)]
        with contextlib.suppress(subprocess.TimeoutExpired):  # escalation below handles a stuck launcher
            subprocess.run(
                self._launcher("--stop"),
                cwd=self.run_dir,
                env=self._env(),
                capture_output=True,
                timeout=60,
                check=False,
            )
        if not _wait_gone(family, timeout_s):
            _signal_all(family, kill=False)
            if not _wait_gone(family, 10):
                _signal_all(family, kill=True)
                _wait_gone(family, 10)
        (self.run_dir / PID_FILE_NAME).unlink(missing_ok=True)
        self.key_file.unlink(missing_ok=True)

    def __enter__(self) -> LocalServer:
        self.start()
        try:
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _version_problem(desc: dict) -> str | None:
    if int(desc.get("minWorkers", 0)) == 0:
        return None
    if any(w.get("status") == "READY" for w in desc.get("workers", [])):
        return None
    return f"model {desc.get('modelName')} version {desc.get('modelVersion')} has no READY worker yet"


def _models_problem(mgmt: ManagementClient, expected: set[str]) -> str | None:
    registered = {m["modelName"] for m in mgmt.list()}
    missing = sorted(expected - registered)
    if missing:
        return f"models not registered yet: {', '.join(missing)}"
    for name in sorted(registered):
        for desc in mgmt.versions(name):
            problem = _version_problem(desc)
            if problem:
                return problem
    return None


# --- command line --------------------------------------------------------------------------------------


def _server_for(args: argparse.Namespace) -> LocalServer:
    store = Path(args.model_store)
    models = args.models if args.models is not None else sorted(p.name for p in store.glob("*.mar"))
    return LocalServer(args.config, args.run_dir, store, models, ports=args.ports)


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
        server.wait_healthy(args.timeout)
    except (ServerStartError, PortInUseError) as exc:
        hint = " (another server holds it; this command only manages the one in --run-dir)"
        print(f"error: {exc}{hint if isinstance(exc, PortInUseError) else ''}", file=sys.stderr)
        server.stop()
        return 1
    print(f"TorchServe is healthy (pid {server.frontend_pid})")
    _print_urls(server)
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    server = _server_for(args)
    pid = server.running_pid()
    if pid is None:
        print(f"no TorchServe running from {server.run_dir}")
        return 0
    server.stop()
    print(f"TorchServe (pid {pid}) from {server.run_dir} stopped")
    return 0


def _worker_lines(server: LocalServer) -> list[str]:
    lines = []
    with server.management_client(timeout_s=10) as mgmt:
        for model in mgmt.list():
            name = model["modelName"]
            default = mgmt.describe(name)[0]["modelVersion"]
            for desc in mgmt.versions(name):
                workers = desc.get("workers", [])
                ready = sum(w.get("status") == "READY" for w in workers)
                pids = ",".join(str(w.get("pid")) for w in workers) or "-"
                mark = " (default)" if desc["modelVersion"] == default else ""
                lines.append(
                    f"  {name} {desc['modelVersion']}{mark}: {ready}/{len(workers)} workers READY "
                    f"(min {desc['minWorkers']}, max {desc['maxWorkers']}, batch {desc['batchSize']}), pids {pids}"
                )
    return lines or ["  no models registered"]


def cmd_status(args: argparse.Namespace) -> int:
    server = _server_for(args)
    if not server.is_running():
        print(f"no TorchServe running from {server.run_dir}")
        return 3
    print(f"TorchServe running from {server.run_dir} (pid {server.frontend_pid})")
    _print_urls(server)
    try:
        print("models:\n" + "\n".join(_worker_lines(server)))
    except (KeyFileError, ServerError, ServerUnreachableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    root = project_root()
    parser = argparse.ArgumentParser(prog="python -m toolkit.server", description="Local TorchServe lifecycle.")
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--run-dir", default=str(root / DEFAULT_RUN_DIR_NAME), help="server's run directory")
    parser.add_argument("--config", default=str(root / DEFAULT_CONFIG), help="template config.properties")
    parser.add_argument("--model-store", default=str(root / "model_store"), help="directory of .mar files")
    parser.add_argument(
        "--models", nargs="*", default=None, help="archives to load at start (default: every *.mar in the store)"
    )
    parser.add_argument("--ports", choices=["config", "free"], default="config", help="listener ports")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for health at start")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"start": cmd_start, "stop": cmd_stop, "status": cmd_status}[args.command](args)
    except JavaNotFoundError as exc:
        print(str(exc), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
