"""The application builder KubeRay's RayService runs (`serveConfigV2.applications[].import_path`).

    import_path: toolkit.engines.ray.kuberay:build
    args: {model_store: /models/model-store, key_file: /keys/key_file.json}

On Kubernetes the keys are not generated at start: they come from a Secret mounted as `key_file` (TorchServe's
key-file shape, whose one home is `toolkit.client.auth`: read, written, expiry), so in-cluster clients
read the same Secret. Every `*.mar` of `model_store` is deployed, scaled from its `ray:` section, exactly as
`make ray-serve` deploys them.
"""

from __future__ import annotations

import time
from pathlib import Path

from ray.serve.deployment import Application

from toolkit.archive.mar import Archive, store_archives
from toolkit.client.auth import key_expiry, read_keys
from toolkit.engines.ray.app import build_app
from toolkit.errors import ServerStartError

NO_EXPIRY_S = 10 * 365 * 24 * 3600  # a Secret's key is rotated by replacing the Secret, not by a clock


def _expiry(key_file: Path) -> float:
    """The inference key's expiry from the key file (epoch seconds); far away when the file names none."""
    expiry = key_expiry(key_file)
    return time.time() + NO_EXPIRY_S if expiry is None else expiry


def build(args: dict[str, str]) -> Application:
    """Ray Serve application builder: `args` names `model_store` (folder of .mar files) and `key_file`."""
    store, key_file = Path(args["model_store"]), Path(args["key_file"])
    archives = store_archives(store)
    if not archives:
        raise ServerStartError(f"no .mar archives in {store}")
    return build_app([Archive.open(path) for path in archives], read_keys(key_file).inference, _expiry(key_file))
