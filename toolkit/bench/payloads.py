"""The request bodies the bench sends: one held-out MNIST digit as JSON pixels, PNG bytes and a .npy array."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

INPUT_KINDS = ("json", "png", "npy")
CONTENT_TYPES = {"json": "application/json", "png": "image/png", "npy": "application/x-npy"}


@dataclass(frozen=True)
class Payload:
    """One request body on disk (wrk reads it from there) and its Content-Type."""

    kind: str
    path: Path
    content_type: str
    size_bytes: int


def first_digit(heldout: Path) -> np.ndarray:
    """The first (28, 28) uint8 image of a `heldout.npz` (array `x` of shape (N, 28, 28))."""
    with np.load(heldout) as data:
        images = data["x"]
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"{heldout}: expected x as (N, H, W) uint8, got {images.shape} {images.dtype}")
    return images[0]


def encode(kind: str, image: np.ndarray) -> bytes:
    """One (H, W) uint8 image as the body of input path `kind` (json | png | npy)."""
    if kind == "json":
        return json.dumps({"image": image.tolist()}, separators=(",", ":")).encode()
    buffer = io.BytesIO()
    if kind == "png":
        Image.fromarray(image, mode="L").save(buffer, format="PNG")
    elif kind == "npy":
        np.save(buffer, image, allow_pickle=False)
    else:
        raise ValueError(f"unknown input kind {kind!r}; known: {INPUT_KINDS}")
    return buffer.getvalue()


def write_payloads(image: np.ndarray, into: Path) -> dict[str, Payload]:
    """Write the body of every input kind under `into`; kind -> Payload."""
    into.mkdir(parents=True, exist_ok=True)
    out = {}
    for kind in INPUT_KINDS:
        body = encode(kind, image)
        path = into / f"body.{kind}"
        path.write_bytes(body)
        out[kind] = Payload(kind, path, CONTENT_TYPES[kind], len(body))
    return out
