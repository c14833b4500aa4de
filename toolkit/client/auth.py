"""TorchServe token authorization: reading the key file it writes, building the HTTP header and gRPC metadata.

TorchServe 0.12 (token authorization on) writes `key_file.json` into its working directory at start,
mode 0600, pretty-printed JSON of this shape::

    {
      "management": {"key": "<str>", "expiration time": "<ISO-8601 instant>"},
      "inference":  {"key": "<str>", "expiration time": "<ISO-8601 instant>"},
      "API":        {"key": "<str>"}
    }

The inference key opens the inference API (/ping included), the management key the management API;
neither opens the other. `torchserve --stop` deletes the file. This module is the one home of that shape:
`read_keys` and `key_expiry` read it (the CLIs, the local server, KubeRay's Secret), `write_keys` writes it
(toolkit.engines.tokens, for engines without token auth of their own).

Command line: `python -m toolkit.client.auth [--kind inference|management] KEY_FILE` prints one key.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from toolkit.errors import KeyFileError


@dataclass(frozen=True)
class Keys:
    """The two bearer keys of one running TorchServe."""

    inference: str
    management: str


EXPIRY = "expiration time"  # the key of each key's expiry: an ISO-8601 instant in UTC ("...Z")


def _section_key(data: dict, section: str, path: Path) -> str:
    entry = data.get(section)
    key = entry.get("key") if isinstance(entry, dict) else None
    if not isinstance(key, str) or not key:
        raise KeyFileError(f"malformed key file {path}: no string '{section}.key'")
    return key


def _load(path: Path) -> dict:
    """The key file's JSON object; KeyFileError naming the file when it is missing, unreadable or not one."""
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
    return data


def read_keys(path: str | Path) -> Keys:
    """The inference and management keys from a TorchServe `key_file.json`.

    Raises KeyFileError naming the file when it does not exist, is not JSON, or lacks either key.
    """
    path = Path(path)
    data = _load(path)
    return Keys(
        inference=_section_key(data, "inference", path),
        management=_section_key(data, "management", path),
    )


def key_expiry(path: str | Path, kind: str = "inference") -> float | None:
    """When the `kind` key ("inference" or "management") of a key file expires, in epoch seconds; None when the
    file names no expiry for it (a key file written by hand, e.g. a Kubernetes Secret). KeyFileError naming the
    file when it is unreadable, lacks the key, or its expiry is no ISO-8601 instant."""
    path = Path(path)
    data = _load(path)
    _section_key(data, kind, path)
    stamp = data[kind].get(EXPIRY)
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(str(stamp)).timestamp()
    except ValueError:
        raise KeyFileError(f"malformed key file {path}: '{kind}.{EXPIRY}' is not an ISO-8601 time: {stamp!r}") from None


def write_keys(path: str | Path, keys: Keys, api_key: str, expires_at_s: float) -> None:
    """Write `keys` (and the token API's `api_key`) to `path` in TorchServe's key-file shape, both keys expiring
    at `expires_at_s` (epoch seconds). The file is created with mode 0600 before any key is in it."""
    path = Path(path)
    stamp = datetime.fromtimestamp(expires_at_s, UTC).isoformat().replace("+00:00", "Z")
    data = {
        "management": {"key": keys.management, EXPIRY: stamp},
        "inference": {"key": keys.inference, EXPIRY: stamp},
        "API": {"key": api_key},
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), 0o600)  # an existing file keeps its mode through O_CREAT
        json.dump(data, out, indent=2)


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
