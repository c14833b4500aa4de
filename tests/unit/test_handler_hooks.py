"""TorchServe's own hooks on our handlers: preprocess -> inference -> postprocess, each overridable.

Every handler here runs through the in-process TorchServe worker (toolkit.archive.worker): TorchServe's own
loader, Context and request parsing.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from handlers.base import Batch, ServingHandler
from handlers.errors import DecodeError
from handlers.image import DecodedImages, ImageClassifier
from tests.served import digit_pixels, png_bytes

TOL = 2e-6  # answers are rounded to 6 decimals


class Recording(ImageClassifier):
    """Records each hook call and what it was given, then does what the base handler does."""

    calls: list[tuple[str, object]]

    def preprocess(self, data: list[dict]) -> Batch:
        self.calls.append(("preprocess", data))
        return super().preprocess(data)

    def inference(self, batch: Batch) -> Batch:
        self.calls.append(("inference", batch))
        return super().inference(batch)

    def postprocess(self, batch: Batch) -> list[bytes]:
        self.calls.append(("postprocess", batch))
        return super().postprocess(batch)


class Blank(ImageClassifier):
    """preprocess override: every decoded image replaced by a black one."""

    def preprocess(self, data: list[dict]) -> Batch:
        batch = super().preprocess(data)
        return replace(batch, inputs=(self.to_tensor(np.zeros((len(batch.inputs[0]), 28, 28), dtype=np.float32)),))


class ShiftAveraged(ImageClassifier):
    """inference override (test-time augmentation): probabilities averaged over the image and its 1-pixel shifts,
    in one forward of all five views."""

    def inference(self, batch: Batch) -> Batch:
        (images,) = batch.inputs
        views = [images] + [images.roll(shift, dims=dim) for shift in (-1, 1) for dim in (2, 3)]
        probabilities = self.model(torch.cat(views)).softmax(dim=1).view(len(views), len(images), -1)
        return batch.with_outputs(probabilities.mean(dim=0).log())


class Tempered(ImageClassifier):
    """postprocess override (test-time calibration): scores divided by a temperature of 2 before encoding."""

    def postprocess(self, batch: Batch) -> list[bytes]:
        return super().postprocess(replace(batch, outputs=batch.outputs.with_main(batch.outputs.main / 2.0)))


def probabilities(answer) -> list[float]:
    body = answer.json()
    assert answer.status == 200, body
    return body["probabilities"]


def test_each_hook_is_called_once_per_batch_in_order_with_documented_values(make_image_handler):
    served = make_image_handler(Recording)
    served.handler.calls = []
    png, pair = png_bytes(digit_pixels()), [digit_pixels(1).tolist(), digit_pixels(2).tolist()]
    answers = served.batch(png, b"", {"image": pair})
    assert [name for name, _ in served.handler.calls] == ["preprocess", "inference", "postprocess"]
    (_, rows), (_, before), (_, after) = served.handler.calls
    assert rows == [{"body": png}, {"body": b""}, {"body": {"image": pair}}]  # TorchServe's rows, untouched
    assert [type(r) for r in before.results] == [DecodedImages, DecodeError, DecodedImages]
    (images,) = before.inputs
    assert images.shape == (3, 1, 28, 28) and before.outputs is None  # 1 + 2 images, in request order
    assert after.outputs.main.shape == (3, 10) and after.outputs.main.device == torch.device("cpu")
    assert [a.status for a in answers] == [200, 400, 200]
    assert "empty request body" in answers[1].json()["message"]
    plain = make_image_handler()
    assert probabilities(answers[0]) == pytest.approx(probabilities(plain.one(png)), abs=TOL)
    for got, image in zip(answers[2].json(), pair, strict=True):
        assert got["probabilities"] == pytest.approx(probabilities(plain.one(image)), abs=TOL)


def test_inference_is_skipped_when_every_request_is_refused(make_image_handler):
    served = make_image_handler(Recording)
    served.handler.calls = []
    answers = served.batch(b"", b"{")
    assert [name for name, _ in served.handler.calls] == ["preprocess", "postprocess"]
    assert served.handler.calls[1][1].inputs is None
    assert [a.status for a in answers] == [400, 400]


def test_a_preprocess_override_changes_what_the_model_sees(make_image_handler):
    got = make_image_handler(Blank).batch(png_bytes(digit_pixels()), b"{")
    blank = make_image_handler().one(np.zeros((28, 28)).tolist())
    assert probabilities(got[0]) == pytest.approx(probabilities(blank), abs=TOL)
    assert got[1].status == 400 and got[1].json()["type"] == "decode_error"


def test_an_inference_override_test_time_augmentation_changes_the_answer(make_image_handler):
    pixels = digit_pixels()
    plain = make_image_handler()
    views = [pixels] + [np.roll(pixels, shift, axis=axis) for shift in (-1, 1) for axis in (0, 1)]
    expected = np.mean([probabilities(plain.one(v.tolist())) for v in views], axis=0)
    got = make_image_handler(ShiftAveraged).batch(png_bytes(pixels), {"image": "not*base64"})
    assert probabilities(got[0]) == pytest.approx(expected.tolist(), abs=TOL)
    assert probabilities(got[0]) != pytest.approx(probabilities(plain.one(pixels.tolist())), abs=1e-4)
    assert got[1].status == 400 and "base64" in got[1].json()["message"]


def test_a_postprocess_override_temperature_changes_the_answer(make_image_handler):
    png = png_bytes(digit_pixels())
    plain = make_image_handler().one(png).json()
    answers = make_image_handler(Tempered).batch(png, b"")
    tempered = answers[0].json()
    expected = np.sqrt(plain["probabilities"]) / np.sqrt(plain["probabilities"]).sum()  # softmax(log p / 2)
    assert tempered["probabilities"] == pytest.approx(expected.tolist(), abs=1e-5)
    assert tempered["probabilities"] != pytest.approx(plain["probabilities"], abs=1e-4)
    assert tempered["predicted_label"] == plain["predicted_label"]
    assert answers[1].status == 400 and answers[1].content_type == "application/json"


def test_an_inference_that_loses_rows_fails_the_batch():
    batch = Batch([], inputs=(torch.zeros(2, 3),))
    with pytest.raises(RuntimeError, match="model output 'output' has 1 rows for 2 inputs"):
        batch.with_outputs(torch.zeros(1, 10))


@pytest.mark.parametrize("missing", ["decode", "encode", "example_input"])
def test_a_handler_missing_an_abstract_method_fails_at_instantiation(missing):
    methods = {name: (lambda self, *args: None) for name in ("decode", "encode", "example_input") if name != missing}
    incomplete = type("Incomplete", (ServingHandler,), methods)
    with pytest.raises(TypeError, match=f"abstract method {missing}"):
        incomplete()
