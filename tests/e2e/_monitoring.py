"""Helpers of the metrics and Prometheus e2e tests: a fresh mnist archive of the current handlers (not
model_store's), a server for it, and request bodies of every outcome handlers/metrics.py counts."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

from tests.e2e._helpers import CONFIG, START_TIMEOUT_S, PostRequest, build_variant
from tests.paths import require_built
from tests.payloads import random_image_bytes
from toolkit.paths import MODEL_CONFIGS, ROOT
from toolkit.process import free_ports
from toolkit.server.local import LocalServer

PATH = "/predictions/mnist"
MAX_INPUTS = 4  # max_inputs_per_request of the test archive: 5 images are payload_too_large
DIGIT = [[0] * 10 + [200] * 8 + [0] * 10] * 28


def good(images: int = 1) -> PostRequest:
    """A valid request of `images` 28x28 images (a list when more than one)."""
    return PostRequest(PATH, json.dumps({"image": DIGIT if images == 1 else [DIGIT] * images}).encode())


BAD = {
    "decode_error": PostRequest(PATH, random_image_bytes(), "image/png"),
    "validation_error": PostRequest(PATH, json.dumps({"image": [0] * 28}).encode()),  # wrong shape: one row
    "payload_too_large": PostRequest(PATH, json.dumps({"image": [DIGIT] * (MAX_INPUTS + 1)}).encode()),
}
STATUS = {"ok": 200, "decode_error": 400, "validation_error": 400, "payload_too_large": 413}


@contextlib.contextmanager
def mnist_server(root: Path, **top: object) -> Iterator[LocalServer]:
    """A ready TorchServe in `root` serving a fresh mnist archive built from config/models/mnist.yaml with
    TorchServe keys `top` overridden (1 worker unless given) and max_inputs_per_request = MAX_INPUTS."""
    require_built(ROOT / "build" / "models" / "mnist" / ".built", "make models")
    store = root / "store"
    store.mkdir(parents=True)
    build_variant(MODEL_CONFIGS / "mnist.yaml", "mnist", root, store, {"minWorkers": 1, "maxWorkers": 1, **top},
                  {"max_inputs_per_request": MAX_INPUTS})
    server = LocalServer(root / "run", CONFIG, store, ["mnist.mar"], ports=free_ports())
    with server.running(START_TIMEOUT_S):
        yield server
