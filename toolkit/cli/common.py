"""What `predict` and `manage` share: default server, gRPC import, the one error line and its exit code.

A failure prints one line on stderr, `error: HTTP 409 ConflictStatusException: ...` with a hint where
TorchServe's own message misleads, and the command exits with the error's `exit_code` (2: the request was
wrong, 1: anything else; see toolkit.errors).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from toolkit.errors import GrpcUnavailableError, ServerBusyError, ServerError, ServerUnreachableError
from toolkit.paths import KEY_FILE
from toolkit.torchserve import INVALID_KEY, TOKEN_FAILED


def key_file_of(arg: str | None) -> Path:
    """The key file a `--key-file` argument names, else the `make serve` server's."""
    return Path(arg) if arg else KEY_FILE


def import_grpc() -> ModuleType:
    """toolkit.client.grpc, imported only when --grpc is asked for (its stubs are generated at install time)."""
    try:
        return importlib.import_module("toolkit.client.grpc")
    except ImportError as exc:
        raise GrpcUnavailableError(f"--grpc is unavailable: {exc}") from exc


def _is_key_refusal(exc: ServerError) -> bool:
    """TorchServe refused the token: REST says 400 InvalidKeyException, gRPC 403 (PERMISSION_DENIED) TOKEN_FAILED."""
    return INVALID_KEY.matches(exc.status, exc.kind) or (exc.status == 403 and exc.message.startswith(TOKEN_FAILED))


def _hint(exc: Exception, key_file: Path | None, command: str) -> str:
    """A parenthesised hint where TorchServe's own message misleads; "" when none."""
    if isinstance(exc, ServerError) and _is_key_refusal(exc) and key_file is not None:
        return f" (key from {key_file}; keys change at every server start and expire)"
    if isinstance(exc, ServerError) and command == "register" and "Failed to start workers" in exc.message:
        return " (TorchServe may keep the model registered without workers: check `manage list` and unregister it)"
    if isinstance(exc, ServerBusyError):  # its str() already replaces TorchServe's "has no worker" text
        return (" (retry later or longer: --tries/--retry-time; or give the model more room: jobQueueSize in its"
                " YAML, more workers with `manage scale`)")
    if isinstance(exc, ServerUnreachableError):  # REST and gRPC alike
        return " (is TorchServe running? start it with `make serve`)"
    return ""


def error_line(exc: Exception, key_file: Path | None = None, command: str = "") -> str:
    """The one stderr line for a failure, with a hint where TorchServe's own message misleads."""
    return f"error: {exc}{_hint(exc, key_file, command)}"
