"""ImageClassifier through TorchServe's Context: every input form, per-request errors, batches."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests.payloads import huge_png as declared_size_png
from tests.payloads import truncated
from tests.served import digit_pixels, png_bytes

TOL = 2e-6  # answers are rounded to 6 decimals; batch composition moves the last digit


def probabilities(answer) -> list[float]:
    body = answer.json()
    assert answer.status == 200, body
    return body["probabilities"]


def huge_png(width: int, height: int) -> bytes:
    """A small valid PNG whose IHDR declares width x height, as a decompression bomb would."""
    return declared_size_png(png_bytes(digit_pixels()), width, height)


def test_png_bytes_answer_has_label_and_probabilities(image_handler):
    answer = image_handler.one(png_bytes(digit_pixels()))
    body = answer.json()
    assert answer.status == 200 and answer.content_type == "application/json"
    assert set(body) == {"predicted_label", "label", "probabilities"}
    assert len(body["probabilities"]) == 10
    assert sum(body["probabilities"]) == pytest.approx(1.0, abs=1e-4)
    assert body["predicted_label"] == int(np.argmax(body["probabilities"]))
    assert body["label"] == f"digit {body['predicted_label']}"


@pytest.mark.parametrize("form", ["png", "base64_str", "base64_json", "data_url", "image_key", "data_key",
                                  "inputs_key", "bare_list", "json_bytes", "npy"])
def test_every_input_form_gives_the_same_answer(image_handler, form):
    pixels = digit_pixels()
    png = png_bytes(pixels)
    b64 = base64.b64encode(png).decode()
    npy = io.BytesIO()
    np.save(npy, pixels)
    bodies = {
        "png": png,
        "base64_str": b64,
        "base64_json": {"image": b64},
        "data_url": {"image": "data:image/png;base64," + b64},
        "image_key": {"image": pixels.tolist()},
        "data_key": {"data": pixels.tolist()},
        "inputs_key": {"inputs": pixels.tolist()},
        "bare_list": pixels.tolist(),
        "json_bytes": json.dumps({"image": pixels.tolist()}).encode(),
        "npy": npy.getvalue(),
    }
    reference = probabilities(image_handler.one(png))
    assert probabilities(image_handler.one(bodies[form])) == pytest.approx(reference, abs=TOL)


def test_many_images_in_one_request_are_answered_as_a_list_in_order(image_handler):
    images = [digit_pixels(seed) for seed in range(3)]
    singles = [probabilities(image_handler.one(png_bytes(p))) for p in images]
    for body in ({"image": [p.tolist() for p in images]},
                 [base64.b64encode(png_bytes(p)).decode() for p in images]):
        answer = image_handler.one(body)
        assert answer.status == 200
        answers = answer.json()
        assert isinstance(answers, list) and len(answers) == 3
        for got, expected in zip(answers, singles, strict=True):
            assert got["probabilities"] == pytest.approx(expected, abs=TOL)


def test_colour_large_and_dark_on_light_images_are_brought_to_mnist_layout(image_handler):
    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[4:24, 10:18] = 200  # already in MNIST layout: 20 px tall, centred
    big_dark_on_light_rgb = png_bytes(255 - np.kron(digit, np.ones((4, 4), dtype=np.uint8)), mode="RGB")
    handler = image_handler.handler
    expected = handler.decode(png_bytes(digit)).inputs
    got = handler.decode(big_dark_on_light_rgb).inputs
    assert got.shape == expected.shape == (1, 1, 28, 28)
    pixel_error = ((got - expected) * 0.3081 * 255).abs()  # back to 0..255 intensities
    assert pixel_error.mean() < 6, pixel_error.mean()
    assert image_handler.one(big_dark_on_light_rgb).status == 200


def test_top_k_from_config(make_image_handler):
    body = make_image_handler(top_k=3).one(png_bytes(digit_pixels())).json()
    assert [entry["index"] for entry in body["top_k"]][0] == body["predicted_label"]
    assert len(body["top_k"]) == 3 and "probabilities" not in body
    assert body["top_k"][0]["probability"] >= body["top_k"][1]["probability"] >= body["top_k"][2]["probability"]


def truncated_png() -> bytes:
    return truncated(png_bytes(np.random.default_rng(1).integers(0, 255, (28, 28), dtype=np.uint8)))


BAD_REQUESTS = [
    ("malformed json", b'{"image": [[1, 2]', 400, "decode_error", "malformed JSON"),
    ("non-utf8", b"\xff\xfe\xfa not text", 400, "decode_error", "not UTF-8"),
    ("empty body", b"", 400, "decode_error", "empty request body"),
    ("json of wrong type", b"42", 400, "validation_error", "got int"),
    ("missing key", {"picture": [[0]]}, 400, "validation_error", "needs one of the keys"),
    ("wrong shape", {"image": [0] * 28}, 400, "validation_error", "shape [28]"),
    ("empty image", {"image": [[]]}, 400, "validation_error", "shape [1, 0]"),
    ("ragged rows", {"image": [[0] * 28] * 27 + [[0] * 5]}, 400, "validation_error", "ragged"),
    ("nan", b'{"image": [[NaN]]}', 400, "validation_error", "NaN or Inf"),
    ("string pixel", {"image": [["a"] * 28] * 28}, 400, "validation_error", "is not a number"),
    ("out of range", {"image": [[300] * 28] * 28}, 400, "validation_error", "within [0, 255]"),
    ("random bytes as image", b"\x89PNG\r\n\x1a\n" + bytes(range(256)), 400, "decode_error", "not a decodable image"),
    ("truncated png", truncated_png(), 400, "decode_error", "truncated"),
    ("bad base64", {"image": "not*base64*at*all"}, 400, "decode_error", "base64"),
    ("huge declared size", huge_png(30000, 30000), 413, "payload_too_large", "refused before decoding"),
    ("too large for config", huge_png(3000, 3000), 413, "payload_too_large", "at most 4000000"),
    ("too many images", {"image": [[[0] * 28] * 28] * 9}, 413, "payload_too_large", "at most 8 allowed"),
]


@pytest.mark.parametrize(("case", "body", "status", "kind", "text"), BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_request_gets_its_own_error_and_batch_mates_are_intact(image_handler, case, body, status, kind, text):
    good = png_bytes(digit_pixels())
    reference = probabilities(image_handler.one(good))
    answers = image_handler.batch(good, body, good)
    error = answers[1].json()
    assert answers[1].status == status, error
    assert error["code"] == status and error["type"] == kind
    assert text in error["message"], error["message"]
    for answer in (answers[0], answers[2]):
        assert probabilities(answer) == pytest.approx(reference, abs=TOL)


def test_a_batch_of_only_bad_requests_never_raises(image_handler):
    answers = image_handler.batch(b"", b"{", b"\xff")
    assert [a.status for a in answers] == [400, 400, 400]


def test_a_failing_model_fails_the_whole_batch_once(image_handler):
    """One forward for the batch: the model is called once, and its error fails the batch (TorchServe answers
    every request of it with 503) instead of being retried or turned into per-request answers."""
    calls = []

    def broken(batch: torch.Tensor) -> torch.Tensor:
        calls.append(len(batch))
        raise RuntimeError("device lost")

    image_handler.handler.model = broken
    answers = image_handler.batch(png_bytes(digit_pixels(0)), b"{", png_bytes(digit_pixels(1)),
                                  png_bytes(digit_pixels(2)))
    assert [answer.status for answer in answers] == [503] * 4
    assert {answer.json()["message"] for answer in answers} == {"Prediction failed"}
    assert calls == [3]
    assert "RuntimeError: device lost" in image_handler.worker.last_failure


def encoded(pixels: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize(("fmt", "options", "tol"), [
    ("GIF", {}, TOL),  # lossless for 8-bit grayscale
    ("BMP", {}, TOL),
    ("JPEG", {"quality": 95}, 0.01),  # lossy: pixels move by a few levels
])
def test_gif_bmp_and_jpeg_are_answered_like_the_png(image_handler, fmt, options, tol):
    pixels = digit_pixels()
    png = image_handler.one(png_bytes(pixels)).json()
    answer = image_handler.one(encoded(pixels, fmt, **options))
    assert answer.status == 200, answer.json()
    body = answer.json()
    assert body["predicted_label"] == png["predicted_label"] and body["label"] == png["label"]
    assert body["probabilities"] == pytest.approx(png["probabilities"], abs=tol)
