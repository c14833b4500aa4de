"""`manage`: drive TorchServe's management API, over REST or gRPC, from the command line.

    manage [--management-url URL | --grpc [--grpc-address HOST:PORT]] [--key-file PATH] COMMAND ...
    manage register ARCHIVE.mar [--name N] [--batch-size B] [--max-batch-delay-ms MS] [--workers W]
    manage unregister NAME [--version V]
    manage scale NAME --min N --max N [--version V]
    manage describe NAME [--version V | --all]
    manage versions NAME
    manage set-default NAME VERSION
    manage list

Defaults: REST, the `make serve` server (management address, or with --grpc the gRPC management port, of
config/config.properties; key file .ts_run/key_file.json). Connection options work before or after COMMAND.
Answers are printed as JSON on stdout, the same either way (`{"status": ...}` for register/unregister/scale/
set-default). A failure prints one line on stderr, `error: HTTP 409 ConflictStatusException: ...`, and exits
2 for a 4xx answer (gRPC statuses are mapped to HTTP ones) or a request the protocol cannot carry (gRPC
cannot scale to 0 workers), 1 for anything else.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from contextlib import closing
from typing import Any

from toolkit.cli.common import error_line, import_grpc, key_file_of
from toolkit.client.auth import read_keys
from toolkit.client.management import ManagementApi
from toolkit.client.rest import ManagementClient
from toolkit.errors import ToolkitError
from toolkit.properties import default_urls
from toolkit.server.diagnose import register_explained

Command = Callable[[ManagementApi, argparse.Namespace], Any]


def _register(client: ManagementApi, args: argparse.Namespace) -> Any:
    """Register; a load failure is re-raised with the cause read from the server's worker log."""
    return register_explained(
        client,
        args.log_dir,
        args.archive,
        model_name=args.name,
        batch_size=args.batch_size,
        max_batch_delay_ms=args.max_batch_delay_ms,
        initial_workers=args.workers,
        synchronous=not args.no_wait,
        response_timeout_s=args.response_timeout_s,
    )


def _describe(client: ManagementApi, args: argparse.Namespace) -> Any:
    return client.versions(args.name) if args.all else client.describe(args.name, args.version)


COMMANDS: dict[str, Command] = {
    "register": _register,
    "unregister": lambda c, a: c.unregister(a.name, a.version),
    "scale": lambda c, a: c.scale(a.name, a.min, a.max, a.version, synchronous=not a.no_wait),
    "describe": _describe,
    "versions": lambda c, a: c.versions(a.name),
    "set-default": lambda c, a: c.set_default(a.name, a.version),
    "list": lambda c, a: c.models(),
}


def _connection_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """--management-url/--grpc/--grpc-address/--key-file/--timeout; with `suppress`, a subcommand's copy that
    only overrides the top-level value when given (so the options work before and after the command name)."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument("--management-url", default=default(None), help="management API base URL (default: config's)")
    parser.add_argument("--grpc", action="store_true", default=default(False), help="use the gRPC management API")
    parser.add_argument("--grpc-address", default=default(None), help="gRPC management host:port (default: config's)")
    parser.add_argument("--key-file", default=default(None), help="TorchServe key_file.json (default: make serve's)")
    parser.add_argument("--timeout", type=float, default=default(300.0), help="HTTP timeout / gRPC deadline, seconds")


def _add_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    reg = sub.add_parser("register", parents=[common], help="register an archive of the model store")
    reg.add_argument("archive", help="archive file name in the model store, e.g. mnist.mar")
    reg.add_argument("--name", help="model name (default: the archive's)")
    reg.add_argument("--batch-size", type=int, help="max requests per batch")
    reg.add_argument("--max-batch-delay-ms", type=int, help="max wait to fill a batch, milliseconds")
    reg.add_argument("--workers", type=int, help="initial workers (default: server's default_workers_per_model)")
    reg.add_argument("--response-timeout-s", type=int, help="worker response timeout, seconds "
                     "(TorchServe ignores it when the archive's model-config sets responseTimeout, as ours do)")
    reg.add_argument("--no-wait", action="store_true", help="return before the workers are up")
    unreg = sub.add_parser("unregister", parents=[common], help="unregister a model version")
    unreg.add_argument("name")
    unreg.add_argument("--version", help="version (default: the default version)")
    scale = sub.add_parser("scale", parents=[common], help="set a model version's worker range")
    scale.add_argument("name")
    scale.add_argument("--min", type=int, required=True, help="min workers (>= 1 over gRPC)")
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
    parser = argparse.ArgumentParser(prog="manage", description="TorchServe management API client (REST or gRPC).")
    _connection_options(parser, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    _connection_options(common, suppress=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_commands(sub, common)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parsed arguments; an address option of the other protocol is a usage error (exit 2), not ignored."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.grpc and args.management_url:
        parser.error("--management-url is the REST address; with --grpc give --grpc-address")
    if args.grpc_address and not args.grpc:
        parser.error("--grpc-address needs --grpc")
    return args


def connect(args: argparse.Namespace, key: str) -> ManagementApi:
    """The management client the arguments ask for: REST by default, gRPC with --grpc."""
    if not args.grpc:
        return ManagementClient(args.management_url or default_urls().management, key, args.timeout)
    grpc = import_grpc()
    address = args.grpc_address or default_urls().grpc_management
    return grpc.GrpcClient(management_address=address, management_key=key, timeout_s=args.timeout)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    key_file = key_file_of(args.key_file)
    args.log_dir = key_file.parent / "logs"  # LocalServer's run dir: key file and logs/ side by side
    try:
        with closing(connect(args, read_keys(key_file).management)) as client:
            answer = COMMANDS[args.command](client, args)
    except ToolkitError as exc:
        print(error_line(exc, key_file, args.command), file=sys.stderr)
        return exc.exit_code
    print(json.dumps(answer, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
