"""Predictions through a real TorchServe: every input form, many requests in flight, held-out parity."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest

from tests.e2e._helpers import batch_lines, wait_for
from tests.heldout import heldout, served_labels
from tests.heldout import post_all as post_bodies
from tests.paths import BUILD, require_built
from toolkit.server.diagnose import log_offset
from toolkit.server.local import LocalServer

MNIST_SAMPLES = BUILD / "mnist" / "samples"
TABULAR_SAMPLES = BUILD / "tabular" / "samples"


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def png_pixels(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("L"))


def post_all(server: LocalServer, path: str, bodies: list[tuple[bytes, str]], in_flight: int) -> list:
    """tests.heldout.post_all against the session server, with its key."""
    return post_bodies(server.urls.inference, server.read_keys().inference, path, bodies, in_flight)


def mnist_forms(sample: Path) -> dict[str, tuple[bytes, str]]:
    png = sample.read_bytes()
    pixels = png_pixels(sample)
    b64 = base64.b64encode(png).decode()
    return {
        "png": (png, "image/png"),
        "base64 text": (b64.encode(), "text/plain"),
        "json image": (json.dumps({"image": pixels.tolist()}).encode(), "application/json"),
        "json data": (json.dumps({"data": pixels.tolist()}).encode(), "application/json"),
        "json inputs": (json.dumps({"inputs": pixels.tolist()}).encode(), "application/json"),
        "json base64": (json.dumps({"image": b64}).encode(), "application/json"),
        "npy": (npy_bytes(pixels), "application/x-npy"),
    }


@pytest.mark.parametrize("model", ["mnist", "mnist_torchscript"])
def test_every_mnist_input_form_predicts_the_sample_label(server, model):
    expected = json.loads(require_built(MNIST_SAMPLES / "expected.json", "make models").read_text())
    names = sorted(expected)
    bodies = [form for name in names for form in mnist_forms(MNIST_SAMPLES / name).values()]
    answers = post_all(server, f"/predictions/{model}", bodies, in_flight=8)
    forms = list(mnist_forms(MNIST_SAMPLES / names[0]))
    for i, (status, answer) in enumerate(answers):
        name, form = names[i // len(forms)], forms[i % len(forms)]
        assert status == 200, (name, form, answer)
        assert answer["predicted_label"] == expected[name], (name, form)
        assert answer["label"] == str(expected[name]) and len(answer["probabilities"]) == 10


def test_many_images_in_one_request_come_back_as_a_list_in_order(server):
    expected = json.loads(require_built(MNIST_SAMPLES / "expected.json", "make models").read_text())
    names = sorted(expected)
    images = [png_pixels(MNIST_SAMPLES / name).tolist() for name in names]
    b64 = [base64.b64encode((MNIST_SAMPLES / name).read_bytes()).decode() for name in names]
    bodies = [(json.dumps({"image": images}).encode(), "application/json"),
              (json.dumps({"image": b64}).encode(), "application/json"),
              (npy_bytes(np.stack([png_pixels(MNIST_SAMPLES / n) for n in names])), "application/x-npy")]
    for status, answer in post_all(server, "/predictions/mnist", bodies, in_flight=3):
        assert status == 200
        assert [a["predicted_label"] for a in answer] == [expected[n] for n in names]


@pytest.mark.parametrize("model", ["tabular", "tabular_onnx"])
def test_tabular_json_and_npy_bodies(server, model):
    expected = json.loads(require_built(TABULAR_SAMPLES / "expected.json", "make models").read_text())
    bodies, labels = [], []
    for name, label in sorted(expected.items()):
        request = json.loads((TABULAR_SAMPLES / name).read_text())
        with_probabilities = json.dumps({**request, "return_probabilities": True}).encode()
        bodies += [((TABULAR_SAMPLES / name).read_bytes(), "application/json"),
                   (with_probabilities, "application/json"),
                   (npy_bytes(np.asarray(request["inputs"])), "application/x-npy")]
        labels += [label] * 3
    answers = post_all(server, f"/predictions/{model}", bodies, in_flight=4)
    for i, ((status, answer), label) in enumerate(zip(answers, labels, strict=True)):
        assert status == 200 and answer["predictions"] == label
        assert ("probabilities" in answer) == (i % 3 == 1)


def complete_batches(server: LocalServer, offset: int, requests: int) -> list[dict[str, int]] | None:
    """mnist's batch lines logged after `offset`, once they account for `requests` requests."""
    batches = batch_lines(server.log_dir, offset, "mnist")
    return batches if sum(b["requests"] for b in batches) >= requests else None


def test_64_requests_in_flight_are_all_answered_correctly_in_batches(server):
    expected = json.loads(require_built(MNIST_SAMPLES / "expected.json", "make models").read_text())
    names = sorted(expected) * 13  # 130 requests, 64 in flight at once
    bodies = [((MNIST_SAMPLES / name).read_bytes(), "image/png") for name in names]
    offset = log_offset(server.log_dir)
    answers = post_all(server, "/predictions/mnist", bodies, in_flight=64)
    assert [status for status, _ in answers] == [200] * len(names)
    assert [answer["predicted_label"] for _, answer in answers] == [expected[n] for n in names]
    sizes = [b["requests"] for b in wait_for(lambda: complete_batches(server, offset, len(names)), 10)]
    assert sum(sizes) == len(names) and max(sizes) > 1, sizes


@pytest.mark.parametrize("model", ["mnist", "mnist_torchscript", "tabular", "tabular_onnx"])
def test_held_out_set_through_the_server_matches_the_offline_predictions(server, model):
    bodies, y, offline = heldout(model)
    answers = post_all(server, f"/predictions/{model}", bodies, in_flight=32)
    assert all(status == 200 for status, _ in answers)
    served = served_labels(answers)
    assert served.shape == offline.shape == y.shape == (len(bodies),), "one label per held-out row (no broadcasting)"
    assert (served == offline).all(), f"{int((served != offline).sum())} of {len(bodies)} differ from offline"
