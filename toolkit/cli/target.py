"""Which TorchServe `predict` and `manage` talk to: its addresses and the key file of its tokens.

Each value comes from the first of these that gives it:

1. its own flag: `--url` (inference), `--management-url`, `--grpc-address`, `--key-file`;
2. `--run-dir DIR`: a TorchServe run directory (`make serve`'s `.ts_run`, a test's or a bench's run dir:
   whatever toolkit.server.LocalServer started), whose `config.properties` names the ports and whose
   `key_file.json` holds the tokens;
3. the environment: `TORCHSERVE_URL`, `TORCHSERVE_MANAGEMENT_URL`, `TORCHSERVE_GRPC_ADDRESS` (the gRPC
   inference `host:port`), `TORCHSERVE_GRPC_MANAGEMENT_ADDRESS`, `TORCHSERVE_KEY_FILE`, or
   `TORCHSERVE_RUN_DIR` for all of them at once;
4. the `make serve` server: the addresses of config/config.properties, the key file .ts_run/key_file.json.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from toolkit.errors import InputError
from toolkit.paths import KEY_FILE, KEY_FILE_NAME
from toolkit.properties import Urls, default_urls

RUN_DIR_ENV = "TORCHSERVE_RUN_DIR"
# target field -> (its environment variable)
ENVIRONMENT = {
    "inference": "TORCHSERVE_URL",
    "management": "TORCHSERVE_MANAGEMENT_URL",
    "grpc_inference": "TORCHSERVE_GRPC_ADDRESS",
    "grpc_management": "TORCHSERVE_GRPC_MANAGEMENT_ADDRESS",
    "key_file": "TORCHSERVE_KEY_FILE",
}


@dataclass(frozen=True)
class Target:
    """One server's REST base URLs, gRPC `host:port` addresses, and the key file of its tokens."""

    inference: str
    management: str
    grpc_inference: str
    grpc_management: str
    key_file: Path


def add_run_dir_option(parser: argparse.ArgumentParser, default: object = None) -> None:
    """`--run-dir DIR` (see the module docstring)."""
    parser.add_argument("--run-dir", type=Path, default=default, metavar="DIR",
                        help=f"a TorchServe run directory (config.properties, key_file.json), e.g. .ts_run; "
                             f"also ${RUN_DIR_ENV}")


def run_dir_target(run_dir: Path) -> Target:
    """The server of a run directory: the ports of its config.properties, its key file. InputError when DIR
    holds no config.properties."""
    config = run_dir / "config.properties"
    if not config.is_file():
        raise InputError(f"run directory {run_dir}: no config.properties there (a TorchServe run directory, such "
                         f"as make serve's .ts_run, holds config.properties and {KEY_FILE_NAME})")
    urls = Urls.from_config(config)
    return Target(urls.inference, urls.management, urls.grpc_inference, urls.grpc_management,
                  run_dir / KEY_FILE_NAME)


def default_target() -> Target:
    """The `make serve` server."""
    urls = default_urls()
    return Target(urls.inference, urls.management, urls.grpc_inference, urls.grpc_management, KEY_FILE)


def resolve(flags: Mapping[str, object], run_dir: Path | None,
            environ: Mapping[str, str] | None = None) -> Target:
    """The server to talk to: each field from its flag (`flags`, by Target field name; None: not given), else
    `run_dir`, else its environment variable, else `$TORCHSERVE_RUN_DIR`, else the `make serve` server."""
    environ = os.environ if environ is None else environ
    explicit = run_dir_target(run_dir) if run_dir is not None else None
    env_dir = environ.get(RUN_DIR_ENV)
    fallback = run_dir_target(Path(env_dir)) if env_dir else default_target()
    values = {}
    for name, variable in ENVIRONMENT.items():
        value = flags.get(name)
        if value is None:
            value = getattr(explicit, name) if explicit is not None else environ.get(variable) or None
        values[name] = value if value is not None else getattr(fallback, name)
    return Target(values["inference"], values["management"], values["grpc_inference"], values["grpc_management"],
                  Path(values["key_file"]))
