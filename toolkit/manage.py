"""`manage`: drive TorchServe's REST management API from the command line.

    manage [--management-url URL] [--key-file PATH] COMMAND ...
    manage register ARCHIVE.mar [--name N] [--batch-size B] [--max-batch-delay-ms MS] [--workers W]
    manage unregister NAME [--version V]
    manage scale NAME --min N --max N [--version V]
    manage describe NAME [--version V | --all]
    manage versions NAME
    manage set-default NAME VERSION
    manage list

Defaults: the `make serve` server (management address of config/config.properties, key file
.ts_run/key_file.json). Answers are printed as JSON on stdout. A failure prints one line on stderr,
`error: HTTP 409 ConflictStatusException: ...`, and exits 2 for a 4xx answer, 1 for anything else.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from toolkit.auth import KeyFileError, read_keys
from toolkit.client_errors import ServerError
from toolkit.rest import ManagementClient, ServerUnreachableError
from toolkit.server import default_key_file, default_urls

EXIT_SERVER = 1
EXIT_CLIENT = 2

Handler = Callable[[ManagementClient, argparse.Namespace], Any]


def _register(client: ManagementClient, args: argparse.Namespace) -> Any:
    return client.register(
        args.archive,
        model_name=args.name,
        batch_size=args.batch_size,
        max_batch_delay_ms=args.max_batch_delay_ms,
        initial_workers=args.workers,
        synchronous=not args.no_wait,
        response_timeout_s=args.response_timeout_s,
    )


def _describe(client: ManagementClient, args: argparse.Namespace) -> Any:
    return client.versions(args.name) if args.all else client.describe(args.name, args.version)


HANDLERS: dict[str, Handler] = {
    "register": _register,
    "unregister": lambda c, a: c.unregister(a.name, a.version),
    "scale": lambda c, a: c.scale(a.name, a.min, a.max, a.version, synchronous=not a.no_wait),
    "describe": _describe,
    "versions": lambda c, a: c.versions(a.name),
    "set-default": lambda c, a: c.set_default(a.name, a.version),
    "list": lambda c, a: c.list(),
}


def _connection_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """--management-url/--key-file/--timeout; with `suppress`, a subcommand's copy that only overrides
    the top-level value when given (so the options work before and after the command name)."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument("--management-url", default=default(None), help="management API base URL (default: config's)")
    parser.add_argument("--key-file", default=default(None), help="TorchServe key_file.json (default: make serve's)")
    parser.add_argument("--timeout", type=float, default=default(300.0), help="HTTP timeout in seconds")


def _add_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    reg = sub.add_parser("register", parents=[common], help="register an archive of the model store")
    reg.add_argument("archive", help="archive file name in the model store, e.g. mnist.mar")
    reg.add_argument("--name", help="model name (default: the archive's)")
    reg.add_argument("--batch-size", type=int, help="max requests per batch")
    reg.add_argument("--max-batch-delay-ms", type=int, help="max wait to fill a batch, milliseconds")
    reg.add_argument("--workers", type=int, help="initial workers (default: server's default_workers_per_model)")
    reg.add_argument("--response-timeout-s", type=int, help="worker response timeout, seconds")
    reg.add_argument("--no-wait", action="store_true", help="return before the workers are up")
    unreg = sub.add_parser("unregister", parents=[common], help="unregister a model version")
    unreg.add_argument("name")
    unreg.add_argument("--version", help="version (default: the default version)")
    scale = sub.add_parser("scale", parents=[common], help="set a model version's worker range")
    scale.add_argument("name")
    scale.add_argument("--min", type=int, required=True, help="min workers")
    scale.add_argument("--max", type=int, required=True, help="max workers")
    scale.add_argument("--version", help="version (default: the default version)")
    scale.add_argument("--no-wait", action="store_true", help="return before the workers are up")
    desc = sub.add_parser("describe", parents=[common], help="describe a model version")
    desc.add_argument("name")
    which = desc.add_mutually_exclusive_group()
    which.add_argument("--version", help="version (default: the default version)")
    which.add_argument("--all", action="store_true", help="every version")
    sub.add_parser("versions", parents=[common], help="describe every version of a model").add_argument("name")
    default = sub.add_parser("set-default", parents=[common], help="choose the version /predictions/NAME serves")
    default.add_argument("name")
    default.add_argument("version")
    sub.add_parser("list", parents=[common], help="list registered models")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="manage", description="TorchServe management API client.")
    _connection_options(parser, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    _connection_options(common, suppress=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_commands(sub, common)
    return parser


def error_line(exc: Exception, key_file: Path | None = None, command: str = "") -> str:
    """The one stderr line for a failure, with a hint where TorchServe's own message misleads."""
    line = f"error: {exc}"
    if isinstance(exc, ServerError) and exc.kind == "InvalidKeyException" and key_file is not None:
        line += f" (key from {key_file}; keys change at every server start and expire)"
    elif isinstance(exc, ServerError) and command == "register" and "Failed to start workers" in exc.message:
        line += " (the model stays registered without workers: unregister it after fixing the archive)"
    elif isinstance(exc, ServerUnreachableError):
        line += " (is TorchServe running? start it with `make serve`)"
    return line


def exit_code(exc: Exception) -> int:
    """2 for a 4xx answer, 1 for anything else."""
    return EXIT_CLIENT if isinstance(exc, ServerError) and 400 <= exc.status < 500 else EXIT_SERVER


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    key_file = Path(args.key_file) if args.key_file else default_key_file()
    try:
        url = args.management_url or default_urls().management
        with ManagementClient(url, read_keys(key_file).management, args.timeout) as client:
            answer = HANDLERS[args.command](client, args)
    except (ServerError, ServerUnreachableError, KeyFileError) as exc:
        print(error_line(exc, key_file, args.command), file=sys.stderr)
        return exit_code(exc)
    print(json.dumps(answer, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
