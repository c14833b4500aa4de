"""TorchServe management over gRPC from the command line.

    python -m toolkit.grpc_cli [--management-address H:P] [--inference-address H:P]
                               [--key-file key_file.json | --token KEY] [--timeout-s S] COMMAND ...

Commands: register URL | unregister NAME | scale NAME --min N --max N | set-default NAME VERSION |
describe NAME | list | ping. Management commands use the management key, `ping` the inference key.
Status texts are printed as they come; describe/list print JSON. A server error prints
"error: HTTP <status> <kind>: <message>" on stderr and exits 1; bad arguments exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from toolkit.auth import KeyFileError, read_keys
from toolkit.client_errors import ServerError
from toolkit.grpc_client import GrpcClient

Command = Callable[[GrpcClient, argparse.Namespace], str]


def _register(client: GrpcClient, args: argparse.Namespace) -> str:
    return client.register(
        args.url,
        model_name=args.model_name,
        batch_size=args.batch_size,
        max_batch_delay_ms=args.max_batch_delay_ms,
        initial_workers=args.initial_workers,
        synchronous=not args.no_wait,
        response_timeout_s=args.response_timeout_s,
    )


def _scale(client: GrpcClient, args: argparse.Namespace) -> str:
    maximum = args.max if args.max is not None else args.min
    return client.scale(args.name, args.min, maximum, version=args.version, synchronous=not args.no_wait)


COMMANDS: dict[str, Command] = {
    "register": _register,
    "unregister": lambda c, a: c.unregister(a.name, a.version),
    "scale": _scale,
    "set-default": lambda c, a: c.set_default(a.name, a.version),
    "describe": lambda c, a: json.dumps(c.describe(a.name, a.version), indent=2),
    "list": lambda c, a: json.dumps(c.list_models(limit=a.limit), indent=2),
    "ping": lambda c, a: c.ping(),
}


def _add_commands(sub: argparse._SubParsersAction) -> None:
    """Declare each command's arguments (names as in COMMANDS)."""
    reg = sub.add_parser("register", help="register an archive of the model store (or an http(s) URL)")
    reg.add_argument("url", help="archive file name in the model store, e.g. mnist.mar")
    reg.add_argument("--model-name", help="name overriding the manifest's")
    reg.add_argument("--batch-size", type=int, help="requests per batch (server default 1)")
    reg.add_argument("--max-batch-delay-ms", type=int, help="batch wait in ms (server default 100)")
    reg.add_argument("--initial-workers", type=int, help="workers to start (server default_workers_per_model)")
    reg.add_argument("--response-timeout-s", type=int, help="per-request timeout in s (server default 120)")
    reg.add_argument("--no-wait", action="store_true", help="answer before the workers are up")
    unreg = sub.add_parser("unregister", help="unregister a model version")
    unreg.add_argument("name")
    unreg.add_argument("--version", help="version to remove (default: the default version)")
    scale = sub.add_parser("scale", help="set the worker count of a model version")
    scale.add_argument("name")
    scale.add_argument("--min", type=int, required=True, help="minimum workers, >= 1 over gRPC")
    scale.add_argument("--max", type=int, help="maximum workers (default: --min)")
    scale.add_argument("--version", help="version to scale (default: the default version)")
    scale.add_argument("--no-wait", action="store_true", help="answer before the workers change")
    setdef = sub.add_parser("set-default", help="make a version the model's default")
    setdef.add_argument("name")
    setdef.add_argument("version")
    desc = sub.add_parser("describe", help="print a model's description JSON")
    desc.add_argument("name")
    desc.add_argument("--version", help='version to describe, or "all" (default: the default version)')
    lst = sub.add_parser("list", help="print the registered models JSON")
    lst.add_argument("--limit", type=int, default=100, help="page size, 1..100 (default 100)")
    sub.add_parser("ping", help="print the server health (uses the inference key)")


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser; `args.command` names an entry of COMMANDS."""
    parser = argparse.ArgumentParser(prog="python -m toolkit.grpc_cli", description=__doc__.splitlines()[0])
    parser.add_argument("--management-address", default="127.0.0.1:7071", help="host:port (default %(default)s)")
    parser.add_argument("--inference-address", default="127.0.0.1:7070", help="host:port (default %(default)s)")
    auth = parser.add_mutually_exclusive_group()
    auth.add_argument("--key-file", help="TorchServe key_file.json; picks the key the command needs")
    auth.add_argument("--token", help="key to send as Bearer token (management key; inference key for ping)")
    parser.add_argument("--timeout-s", type=float, default=120.0, help="call deadline in s (default %(default)s)")
    _add_commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return parser


def _client(args: argparse.Namespace) -> GrpcClient:
    """Client for the parsed arguments, with the keys from --key-file or --token (none: no token)."""
    inference_key = management_key = args.token
    if args.key_file:
        keys = read_keys(args.key_file)
        inference_key, management_key = keys.inference, keys.management
    return GrpcClient(
        args.inference_address, args.management_address, inference_key, management_key, timeout_s=args.timeout_s
    )


def main(argv: list[str] | None = None) -> int:
    """Run one command; 0 on success, 1 on a server or key-file error, 2 on bad arguments."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _client(args) as client:
            print(COMMANDS[args.command](client, args))
    except (ServerError, KeyFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # argument values the client refuses (e.g. scale --min 0)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
