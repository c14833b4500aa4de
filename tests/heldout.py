"""What the serving tiers (e2e on TorchServe, cluster on Ray Serve) share to send requests and compare answers:
one closed-loop POST of many bodies, and the held-out set as request bodies with the labels served for them."""

from __future__ import annotations

import asyncio
import json

import numpy as np

from handlers.answers import prediction
from tests.paths import BUILD, require_built
from toolkit.bench.aioclient import PostRequest, closed_loop


def post_all(base_url: str, key: str, path: str, bodies: list[tuple[bytes, str]], in_flight: int) -> list:
    """POST every (body, content type) with at most `in_flight` outstanding (toolkit.bench.aioclient's closed
    loop); returns (status, JSON) in order. A request without an HTTP answer fails the test."""
    reqs = [PostRequest(path, body, ctype) for body, ctype in bodies]
    outcomes = asyncio.run(closed_loop(base_url, key, reqs, concurrency=in_flight, timeout_s=120))
    assert [o.index for o in outcomes] == list(range(len(reqs)))
    cut = [o for o in outcomes if o.status is None]
    assert not cut, f"requests without an HTTP answer: {cut[:5]}"
    return [(o.status, o.json()) for o in outcomes]


def heldout(model: str) -> tuple[list[tuple[bytes, str]], np.ndarray, np.ndarray]:
    """The held-out set of `model` (mnist or tabular, their _onnx / _torchscript variants included): one JSON
    request body per row, the true labels, and the labels the TorchScript module predicted offline
    (`heldout.npz` `pred`)."""
    name = model.removesuffix("_onnx").removesuffix("_torchscript")
    data = np.load(require_built(BUILD / name / "heldout.npz", "make models"))
    key = "image" if name == "mnist" else "inputs"
    rows = [row.tolist() if name == "mnist" else [row.tolist()] for row in data["x"]]
    return [(json.dumps({key: row}).encode(), "application/json") for row in rows], data["y"], data["pred"]


def served_labels(answers: list) -> np.ndarray:
    """One predicted label per single-row answer (handlers.answers.prediction; tabular answers hold a list)."""
    labels = [prediction(answer) for _, answer in answers]
    return np.array([label[0] if isinstance(label, list) else label for label in labels])
