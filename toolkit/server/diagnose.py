"""Why a model failed to load: the worker's own exception, which TorchServe's management API leaves out.

TorchServe 0.12 answers a registration (or scale-up) whose workers cannot load the model with
`500 InternalServerException: Failed to start workers for model <name> version: <version>` and nothing
more. The real cause (a corrupt model file, a missing dependency, the RuntimeError our generated entry file
raises to name an ImportError) is only in the server's `<log dir>/model_log.log`, one line per line of
worker output: `<time> [INFO ] W-<port>-<name>_<version>-stdout MODEL_LOG - <text>`.

`register_explained` registers through a ManagementApi client (REST or gRPC) and, on that 500, re-raises
the ServerError with the worker's exception line appended. `load_failure_cause` reads the log alone.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from toolkit.client.management import ManagementApi, Registration
from toolkit.errors import ServerError
from toolkit.polling import poll_until

MODEL_LOG = "model_log.log"
FAILED_TO_START = re.compile(r"Failed to start workers for model (?P<model>\S+) version: (?P<version>\S+)")
EXCEPTION_LINE = re.compile(r"^(?P<type>[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)): (?P<message>.+)$")
# TorchServe's own re-raise in model_service_worker.py after a failed load; it carries no cause.
WRAPPER_MESSAGES = ("500 - Unknown exception",)


def log_offset(log_dir: Path) -> int:
    """Current size of the model log (bytes), to read only what a later call adds."""
    try:
        return (log_dir / MODEL_LOG).stat().st_size
    except OSError:
        return 0


def worker_lines(log_dir: Path, model: str, version: str, offset: int = 0) -> list[str]:
    """Output lines of the workers of one model version written after byte `offset`, prefixes removed."""
    marker = re.compile(rf"W-\d+-{re.escape(model)}_{re.escape(version)}-std(?:out|err) MODEL_LOG - (?P<text>.*)$")
    try:
        with (log_dir / MODEL_LOG).open("rb") as fh:
            fh.seek(offset)
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [m["text"].rstrip() for line in text.splitlines() if (m := marker.search(line))]


def failure_cause(lines: list[str]) -> str | None:
    """The last exception line (`SomeError: message`) of a worker's output that is not TorchServe's own
    cause-less wrapper; chained tracebacks end with the most specific one we raise (our entry file's
    RuntimeError naming the ImportError), a plain failure with the library's own error."""
    causes = [line for line in lines if (m := EXCEPTION_LINE.match(line)) and m["message"] not in WRAPPER_MESSAGES]
    return causes[-1] if causes else None


def load_failure_cause(log_dir: Path, model: str, version: str, offset: int = 0, wait_s: float = 3.0) -> str | None:
    """The worker exception behind a failed load of `model` `version`, from the log after `offset`.

    Polls up to `wait_s` seconds: TorchServe copies worker output into the log on its own thread, which
    can lag behind the API's 500 answer. None when no exception line shows up or there is no such log.
    """
    if not (log_dir / MODEL_LOG).is_file():  # not a LocalServer run dir: nothing to wait for
        return None
    return poll_until(lambda: failure_cause(worker_lines(log_dir, model, version, offset)), wait_s, every_s=0.1)


def explain(error: ServerError, log_dir: Path, offset: int = 0) -> ServerError:
    """`error` with the worker's cause appended when it is TorchServe's "Failed to start workers" 500;
    otherwise `error` itself."""
    found = FAILED_TO_START.search(error.message)
    if error.status != 500 or found is None:
        return error
    cause = load_failure_cause(log_dir, found["model"], found["version"], offset)
    if cause is None:
        return ServerError(error.status, f"{error.message} (no cause found in {log_dir / MODEL_LOG})", error.kind)
    return ServerError(error.status, f"{error.message}: {cause} (from {log_dir / MODEL_LOG})", error.kind)


def register_explained(mgmt: ManagementApi, log_dir: Path, url: str | Registration, **options: Any) -> dict:
    """`mgmt.register(url, **options)` (a Registration, or an archive and Registration's fields); a load
    failure is re-raised with the worker's cause (see explain)."""
    offset = log_offset(log_dir)
    try:
        return mgmt.register(url, **options)
    except ServerError as exc:
        raise explain(exc, log_dir, offset) from exc
