"""Bearer keys for engines that have no token auth of their own (Ray Serve), in TorchServe's key-file shape.

The file has TorchServe's JSON shape (written by `toolkit.client.auth.write_keys`, the shape's one home), so
`toolkit.client.auth.read_keys`, the CLIs' `--key-file` and the README's curl lines work unchanged. Keys are
32 random bytes, hex; they expire `lifetime_s` after they were made (TorchServe's default 24 h).
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

from toolkit.client.auth import Keys, write_keys

LIFETIME_S = 24 * 3600


def write_key_file(path: str | Path, lifetime_s: float = LIFETIME_S) -> tuple[Keys, float]:
    """New inference, management and API keys in `path`; returns the keys and their expiry (epoch seconds)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    expires = time.time() + lifetime_s
    keys = Keys(inference=secrets.token_hex(32), management=secrets.token_hex(32))
    write_keys(path, keys, secrets.token_hex(32), expires)
    return keys, expires
