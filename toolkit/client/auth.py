"""TorchServe token authorization: reading the key file it writes, building the HTTP header and gRPC metadata.

TorchServe 0.12 (token authorization on) writes `key_file.json` into its working directory at start,
mode 0600, pretty-printed JSON of this shape::

    {
      "management": {"key": "<str>", "expiration time": "<ISO-8601 instant>"},
      "inference":  {"key": "<str>", "expiration time": "<ISO-8601 instant>"},
      "API":        {"key": "<str>"}
    }

The inference key opens the inference API (/ping included), the management key the management API;
neither opens the other. `torchserve --stop` deletes the file.

Command line: `python -m toolkit.client.auth [--kind inference|management] KEY_FILE` prints one key.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from toolkit.errors import KeyFileError


@dataclass(frozen=True)
class Keys:
    """The two bearer keys of one running TorchServe."""

    inference: str
    management: str


def _section_key(data: dict, section: str, path: Path) -> str:
    entry = data.get(section)
    key = entry.get("key") if isinstance(entry, dict) else None
    if not isinstance(key, str) or not key:
        raise KeyFileError(f"malformed key file {path}: no string '{section}.key'")
    return key


def read_keys(path: str | Path) -> Keys:
    """The inference and management keys from a TorchServe `key_file.json`.

    Raises KeyFileError naming the file when it does not exist, is not JSON, or lacks either key.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyFileError(
            f"key file not found: {path} (TorchServe writes it into its working directory at start; "
            "is the server running?)"
        ) from None
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise KeyFileError(f"malformed key file {path}: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise KeyFileError(f"malformed key file {path}: top level is not a JSON object")
    return Keys(
        inference=_section_key(data, "inference", path),
        management=_section_key(data, "management", path),
    )


def auth_header(key: str) -> dict[str, str]:
    """The HTTP header TorchServe expects for a key: `{"Authorization": "Bearer <key>"}`."""
    return {"Authorization": f"Bearer {key}"}


def grpc_auth(key: str | None) -> tuple[tuple[str, str], ...]:
    """The gRPC call metadata TorchServe expects for a key: `(("authorization", "Bearer <key>"),)`.

    None (or "") sends no token, for servers run with token authorization off.
    """
    return (("authorization", f"Bearer {key}"),) if key else ()


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m toolkit.client.auth [--kind inference|management] KEY_FILE`: print one key (for curl lines)."""
    parser = argparse.ArgumentParser(prog="python -m toolkit.client.auth", description="Print a TorchServe key.")
    parser.add_argument("key_file", help="TorchServe key_file.json")
    parser.add_argument("--kind", choices=["inference", "management"], default="inference")
    args = parser.parse_args(argv)
    try:
        keys = read_keys(args.key_file)
    except KeyFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(getattr(keys, args.kind))
    return 0


if __name__ == "__main__":
    sys.exit(main())
