"""Every error the toolkit raises, in one place, with the exit code a command line gives it.

`ToolkitError.exit_code`: 2 when the caller asked for something wrong (a bad input, a 4xx answer, a request
the protocol cannot carry, an invalid archive), 1 when something failed that the caller could not have
prevented (server down, 5xx, a process that did not start). CLIs catch `ToolkitError` and print one line.
The handler library keeps its own (`handlers.errors`): it ships inside archives and never imports this.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

EXIT_FAILURE = 1
EXIT_USAGE = 2


class ToolkitError(Exception):
    """Base of the toolkit's errors; `exit_code` is what a CLI exits with."""

    exit_code = EXIT_FAILURE


def exit_status(command: Callable[[], int]) -> int:
    """Run a CLI command: its own exit status, or for a ToolkitError one `error: ...` line on stderr and the
    error's exit_code."""
    try:
        return command()
    except ToolkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


# --- talking to a server ---------------------------------------------------------------------------------


@dataclass
class ServerError(ToolkitError):
    """The server refused or failed a call. `status` is HTTP (a gRPC code is mapped to the HTTP status it
    stands for); `kind` is the server's error type. Exit 2 for a 4xx, 1 otherwise."""

    status: int
    message: str
    kind: str = ""

    def __str__(self) -> str:
        kind = f" {self.kind}" if self.kind else ""
        return f"HTTP {self.status}{kind}: {self.message}"

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        return EXIT_USAGE if 400 <= self.status < 500 else EXIT_FAILURE


@dataclass
class ServerBusyError(ServerError):
    """The server had no room for the request: its model queue (jobQueueSize) was full. TorchServe 0.12 answers
    this with REST 503 ServiceUnavailableException, gRPC UNAVAILABLE, saying misleadingly that the model "has no
    worker" (it says the same when a model really has none); a RESOURCE_EXHAUSTED / 429 answer means the same.
    `message` keeps the server's text; `str()` says what happened. `attempts` and `waited_s` say how often and
    how long the client tried (toolkit.client.retry) before giving up."""

    attempts: int = 1
    waited_s: float = 0.0

    def __str__(self) -> str:
        tried = f"; gave up after {self.attempts} tries in {self.waited_s:.1f} s" if self.attempts > 1 else ""
        return (f"server busy: model queue full (HTTP {self.status}{tried}; TorchServe words this \"has no worker\", "
                "as it does for a model without workers)")


class ServerUnreachableError(ToolkitError, ConnectionError):
    """No answer at all, over REST or gRPC: connection refused, reset or timed out. The message names the
    address."""


class KeyFileError(ToolkitError, RuntimeError):
    """The key file is missing or not in TorchServe's format. The message names the file."""


class UnsupportedRequestError(ToolkitError, ValueError):
    """A request the chosen protocol cannot carry, refused before anything is sent (e.g. scaling to 0
    workers over gRPC, which TorchServe 0.12 reads as 1)."""

    exit_code = EXIT_USAGE


class GrpcUnavailableError(ToolkitError, RuntimeError):
    """--grpc was asked for but the gRPC client (or its generated stubs) cannot be imported."""


class DrawUnavailableError(ToolkitError, RuntimeError):
    """predict --draw was asked for but Pillow (not among the clients' dependencies) is not installed."""


class InputError(ToolkitError, ValueError):
    """A CLI input is neither a supported file nor inline JSON."""

    exit_code = EXIT_USAGE


# --- building archives -------------------------------------------------------------------------------------


class PreflightError(ToolkitError):
    """The handler failed its offline check; the message holds the reason or traceback."""

    exit_code = EXIT_USAGE


class UnsafeArchiveError(ToolkitError, ValueError):
    """An archive entry would escape the extraction folder or is a link."""

    exit_code = EXIT_USAGE


# --- the local server ------------------------------------------------------------------------------------


class JavaNotFoundError(ToolkitError, RuntimeError):
    """No java 17+ executable (JAVA_HOME/bin/java, else `java` on PATH). The message says how to install it."""


class ServerStartError(ToolkitError, RuntimeError):
    """TorchServe did not start or did not become healthy. The message carries the log tail."""


class ServerAlreadyRunningError(ToolkitError, RuntimeError):
    """A TorchServe started from the same run directory is still alive."""


class PortInUseError(ToolkitError, RuntimeError):
    """A port the server should listen on is already taken on 127.0.0.1 (or no free one was found)."""


class SettingsError(ToolkitError, ValueError):
    """An environment variable holds a value its setting cannot take. The message names the variable and the
    value."""

    exit_code = EXIT_USAGE
