"""Bearer keys for engines that have no token auth of their own (Ray Serve), in TorchServe's key-file shape.

The file has TorchServe's JSON shape (see toolkit.client.auth), so `toolkit.client.auth.read_keys`, the CLIs'
`--key-file` and the README's curl lines work unchanged. It is written with mode 0600 before any key is in
it. Keys are 32 random bytes, hex; they expire `lifetime_s` after they were made (TorchServe's default 24 h).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path

from toolkit.client.auth import Keys

LIFETIME_S = 24 * 3600


def write_key_file(path: str | Path, lifetime_s: float = LIFETIME_S) -> tuple[Keys, float]:
    """New inference, management and API keys in `path`; returns the keys and their expiry (epoch seconds)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    expires = time.time() + lifetime_s
    stamp = datetime.fromtimestamp(expires, UTC).isoformat().replace("+00:00", "Z")
    keys = Keys(inference=secrets.token_hex(32), management=secrets.token_hex(32))
    data = {
        "management": {"key": keys.management, "expiration time": stamp},
        "inference": {"key": keys.inference, "expiration time": stamp},
        "API": {"key": secrets.token_hex(32)},
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), 0o600)
        json.dump(data, out, indent=2)
    return keys, expires
