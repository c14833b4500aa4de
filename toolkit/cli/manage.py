"""`manage`: drive TorchServe's management API, over REST or gRPC, from the command line.

    manage [--management-url URL | --grpc [--grpc-address HOST:PORT]] [--key-file PATH] COMMAND ...
    manage register ARCHIVE.mar [--name N] [--batch-size B] [--max-batch-delay-ms MS] [--workers W] [--no-wait]
    manage unregister NAME [--version V]
    manage scale NAME --min N --max N [--version V]
    manage describe NAME [--version V | --all]
    manage versions NAME [--json]
    manage set-default NAME VERSION
    manage list [--json]

Defaults: REST, the server of `--run-dir DIR` (a TorchServe run directory: its config.properties and
key_file.json), else of the environment (TORCHSERVE_RUN_DIR, or TORCHSERVE_MANAGEMENT_URL,
TORCHSERVE_GRPC_MANAGEMENT_ADDRESS and TORCHSERVE_KEY_FILE), else the `make serve` server (config/config.properties,
.ts_run/key_file.json); `--management-url`, `--grpc-address` and `--key-file` win over them (toolkit.cli.target).
Connection options work before or after COMMAND.

Output is the same over either protocol. `list` (every version of every model) and `versions` print a table:
model, version, default version, READY/total workers, min/max workers, batch size, batch delay (ms); with
--json they print TorchServe's JSON instead. Every other command prints its answer as JSON on stdout
(`{"status": ...}` for register/unregister/scale/set-default). A failure prints one line on stderr,
`error: HTTP 409 ConflictStatusException: ...`, and exits 2 for a 4xx answer (gRPC statuses are mapped to
HTTP ones) or a request the protocol cannot carry (gRPC cannot scale to 0 workers), 1 for anything else.

`register --workers N` runs N workers. TorchServe 0.12 lets the archive's model-config minWorkers/maxWorkers
win over the registration's initial_workers (TorchServe issue #2851; our archives set minWorkers 2), so
after a synchronous registration whose answer ("registered with K initial workers") shows another count,
manage scales that version to min = max = N: what TorchServe itself sets for initial_workers when the archive
has no range, and the only range that gets down to N (TorchServe stops workers only above maxWorkers). The
answer then says so: `{"status": <register's>, "scaled": <scale's>, "note": <why>}`. With --no-wait
TorchServe answers before any worker starts, and nothing is checked.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from tabulate import tabulate

from toolkit.cli.common import error_line, import_grpc
from toolkit.cli.pipes import quiet_closed_pipe
from toolkit.cli.target import Target, add_run_dir_option, resolve
from toolkit.client.auth import read_keys
from toolkit.client.management import ManagementApi, Registration
from toolkit.client.rest import ManagementClient
from toolkit.errors import ToolkitError
from toolkit.server.diagnose import register_explained

Command = Callable[[ManagementApi, argparse.Namespace], Any]


# TorchServe's answer to a synchronous registration (REST and gRPC alike); the count is the version's minWorkers.
_REGISTERED = re.compile(r'^Model "(?P<model>.+)" Version: (?P<version>\S+) registered with (?P<workers>\d+) initial')


def _register(client: ManagementApi, args: argparse.Namespace) -> Any:
    """Register, then hold the version to --workers (see the module docstring); a load failure is re-raised
    with the cause read from the server's worker log."""
    registration = Registration(
        args.archive,
        model_name=args.name,
        batch_size=args.batch_size,
        max_batch_delay_ms=args.max_batch_delay_ms,
        initial_workers=args.workers,
        synchronous=not args.no_wait,
        response_timeout_s=args.response_timeout_s,
    )
    answer = register_explained(client, args.log_dir, registration)
    return _hold_workers(client, registration, answer)


def _hold_workers(client: ManagementApi, registration: Registration, answer: dict) -> dict:
    """`answer`, or after scaling the registered version to min = max = initial_workers when TorchServe
    started another number of workers (the archive's model-config won), `answer` with what was done."""
    wanted = registration.initial_workers
    match = _REGISTERED.match(str(answer.get("status", "")))
    if wanted is None or not registration.synchronous or match is None or int(match["workers"]) == wanted:
        return answer
    scaled = client.scale(match["model"], wanted, wanted, match["version"], synchronous=True)
    note = (
        f"TorchServe started {match['workers']} workers, not --workers {wanted}: the archive's model-config"
        f" minWorkers/maxWorkers win over initial_workers (TorchServe issue #2851); scaled to min=max={wanted}"
    )
    return {**answer, "scaled": scaled.get("status"), "note": note}


def _describe(client: ManagementApi, args: argparse.Namespace) -> Any:
    return client.versions(args.name) if args.all else client.describe(args.name, args.version)


TABLE_HEADERS = ("MODEL", "VERSION", "DEFAULT", "READY/WORKERS", "MIN/MAX", "BATCH", "DELAY MS")


@dataclass(frozen=True)
class Table:
    """Rows of version descriptions, printed as an aligned text table (`str(table)`)."""

    rows: list[tuple[str, ...]]

    def __str__(self) -> str:
        align = ("left",) * 5 + ("right",) * 2
        return tabulate(self.rows, headers=TABLE_HEADERS, colalign=align, disable_numparse=True)


def _row(desc: dict, default_version: str | None) -> tuple[str, ...]:
    """One table row of a version description; "?" for a field TorchServe left out."""
    workers = desc.get("workers", [])
    ready = sum(1 for w in workers if w.get("status") == "READY")
    version = desc.get("modelVersion", "?")
    return (
        str(desc.get("modelName", "?")),
        str(version),
        "yes" if version == default_version else "",
        f"{ready}/{len(workers)}",
        f"{desc.get('minWorkers', '?')}/{desc.get('maxWorkers', '?')}",
        str(desc.get("batchSize", "?")),
        str(desc.get("maxBatchDelay", "?")),
    )


def _version_rows(client: ManagementApi, name: str) -> list[tuple[str, ...]]:
    """A row per registered version of model `name`. Descriptions do not say which version is the default;
    describing the model without a version does (it describes the default)."""
    default_version = client.describe(name)[0].get("modelVersion")
    return [_row(desc, default_version) for desc in client.versions(name)]


def _list(client: ManagementApi, args: argparse.Namespace) -> Any:
    models = client.models()
    if args.json:
        return models
    return Table([row for model in models for row in _version_rows(client, model["modelName"])])


def _versions(client: ManagementApi, args: argparse.Namespace) -> Any:
    return client.versions(args.name) if args.json else Table(_version_rows(client, args.name))


COMMANDS: dict[str, Command] = {
    "register": _register,
    "unregister": lambda c, a: c.unregister(a.name, a.version),
    "scale": lambda c, a: c.scale(a.name, a.min, a.max, a.version, synchronous=not a.no_wait),
    "describe": _describe,
    "versions": _versions,
    "set-default": lambda c, a: c.set_default(a.name, a.version),
    "list": _list,
}


def _connection_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """--management-url/--grpc/--grpc-address/--key-file/--timeout; with `suppress`, a subcommand's copy that
    only overrides the top-level value when given (so the options work before and after the command name)."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    add_run_dir_option(parser, default(None))
    parser.add_argument("--management-url", default=default(None),
                        help="management API base URL (default: --run-dir's, $TORCHSERVE_MANAGEMENT_URL, config's)")
    parser.add_argument("--grpc", action="store_true", default=default(False), help="use the gRPC management API")
    parser.add_argument("--grpc-address", default=default(None), help="gRPC management host:port (default: "
                        "--run-dir's, $TORCHSERVE_GRPC_MANAGEMENT_ADDRESS, config's)")
    parser.add_argument("--key-file", default=default(None), help="TorchServe key_file.json (default: --run-dir's, "
                        "$TORCHSERVE_KEY_FILE, make serve's)")
    parser.add_argument("--timeout", type=float, default=default(300.0), help="HTTP timeout / gRPC deadline, seconds")


def _add_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    reg = sub.add_parser("register", parents=[common], help="register an archive of the model store")
    reg.add_argument("archive", help="archive file name in the model store, e.g. mnist.mar")
    reg.add_argument("--name", help="model name (default: the archive's)")
    reg.add_argument("--batch-size", type=int, help="max requests per batch")
    reg.add_argument("--max-batch-delay-ms", type=int, help="max wait to fill a batch, milliseconds")
    reg.add_argument("--workers", type=int, help="workers to run (default: the archive's minWorkers, else the "
                     "server's default_workers_per_model); when the archive's model-config starts another number, "
                     "the version is scaled to min=max=WORKERS after a synchronous registration")
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
    versions = sub.add_parser("versions", parents=[common], help="table of every version of a model")
    versions.add_argument("name")
    versions.add_argument("--json", action="store_true", help="print TorchServe's descriptions as JSON")
    default = sub.add_parser("set-default", parents=[common], help="choose the version /predictions/NAME serves")
    default.add_argument("name")
    default.add_argument("version")
    listing = sub.add_parser("list", parents=[common], help="table of every version of every registered model")
    listing.add_argument("--json", action="store_true", help="print TorchServe's model list as JSON")


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


def connect(args: argparse.Namespace, target: Target, key: str) -> ManagementApi:
    """The management client the arguments ask for: REST by default, gRPC with --grpc."""
    if not args.grpc:
        return ManagementClient(target.management, key, args.timeout)
    grpc = import_grpc()
    return grpc.GrpcManagementClient(target.grpc_management, key, args.timeout)


def run(args: argparse.Namespace) -> int:
    """The command against the server of the options, the environment or make serve (toolkit.cli.target)."""
    key_file = None
    try:
        target = resolve({"management": args.management_url, "grpc_management": args.grpc_address,
                          "key_file": args.key_file}, args.run_dir)
        key_file = target.key_file
        args.log_dir = key_file.parent / "logs"  # LocalServer's run dir: key file and logs/ side by side
        with closing(connect(args, target, read_keys(key_file).management)) as client:
            answer = COMMANDS[args.command](client, args)
    except ToolkitError as exc:
        print(error_line(exc, key_file, args.command), file=sys.stderr)
        return exc.exit_code
    print(answer if isinstance(answer, Table) else json.dumps(answer, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with quiet_closed_pipe():
        return run(args)


if __name__ == "__main__":
    sys.exit(main())
