"""ImageClassifier on colour photos (ImageNet-style `handler.image`: resize 256 + center_crop 224), through
TorchServe's Context: every form of a photo takes one path, placements travel per image, nothing is inverted."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from handlers.image import DecodedImages, ImageClassifier
from handlers.imaging import fit
from tests.served import serve
from tests.unit.test_oip import frame, outputs_of, send, tensor

PHOTO_IMAGE = {"width": 224, "height": 224, "channels": 3, "mean": [0.485, 0.456, 0.406],
               "std": [0.229, 0.224, 0.225], "fit": "center_crop", "resize": 256}
CLASSES = 5


def photo_model() -> torch.nn.Module:
    """A small colour classifier: 8x8 average pooling of the 224x224 input, then a linear layer."""
    return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(8), torch.nn.Flatten(), torch.nn.Linear(192, CLASSES),
                               torch.nn.LogSoftmax(dim=1))


@pytest.fixture
def photo_handler(tmp_path):
    config = {"batchSize": 8, "maxWorkers": 1,
              "handler": {"name": "image_classifier", "max_inputs_per_request": 8, "image": PHOTO_IMAGE}}
    return serve(tmp_path, ImageClassifier, photo_model(), config, {str(i): f"class {i}" for i in range(CLASSES)})


def encoded(pixels: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def probabilities(answer) -> list[float]:
    assert answer.status == 200, answer.json()
    return answer.json()["probabilities"]


def test_a_photo_as_png_json_pixels_and_npy_gets_one_answer(photo_handler):
    photo = skimage.data.chelsea()  # 451 x 300
    npy = io.BytesIO()
    np.save(npy, photo)
    reference = probabilities(photo_handler.one(encoded(photo, "PNG")))
    as_base64 = base64.b64encode(encoded(photo, "PNG")).decode()
    for body in ({"image": photo.tolist()}, npy.getvalue(), {"image": as_base64}):
        assert probabilities(photo_handler.one(body)) == pytest.approx(reference, abs=2e-6)


def test_a_jpeg_photo_is_answered_like_its_png(photo_handler):
    photo = skimage.data.coffee()
    png = probabilities(photo_handler.one(encoded(photo, "PNG")))
    assert probabilities(photo_handler.one(encoded(photo, "JPEG"))) == pytest.approx(png, abs=0.01)


def test_decoded_images_carry_each_photos_placement(photo_handler):
    photos = [skimage.data.chelsea(), skimage.data.rocket()]
    decoded = photo_handler.handler.decode([base64.b64encode(encoded(p, "PNG")).decode() for p in photos])
    assert isinstance(decoded, DecodedImages) and decoded.count == 2 and decoded.many
    assert [(p.source_width, p.source_height) for p in decoded.placements] == [(451, 300), (640, 427)]
    image = photo_handler.handler.image
    assert decoded.placements == tuple(fit(p, image).placement for p in photos)


def test_a_light_colour_photo_is_not_inverted(photo_handler):
    """The schema's default background is "dark": a photo on white stays as it is (MNIST's YAML asks for auto)."""
    photo = np.full((300, 400, 3), 250, dtype=np.uint8)
    photo[100:200, 150:250] = (200, 30, 30)
    decoded = photo_handler.handler.decode(encoded(photo, "PNG"))
    expected = photo_handler.handler.to_tensor([fit(photo, photo_handler.handler.image).pixels])
    assert torch.equal(decoded.inputs, expected)


def test_oip_takes_photos_of_any_size_channels_last_or_first(photo_handler):
    photo = skimage.data.chelsea()
    rest = probabilities(photo_handler.one(encoded(photo, "PNG")))
    last = tensor(photo[None].reshape(-1).tolist(), [1, *photo.shape], "UINT8")
    first = tensor(photo.transpose(2, 0, 1)[None].reshape(-1).tolist(), [1, 3, 300, 451], "UINT8")
    for body in ({"inputs": [last]}, {"inputs": [first]}):
        (answer,) = send(photo_handler, frame(body))
        assert outputs_of(answer)["probabilities"]["data"] == pytest.approx(rest, abs=2e-6)


@pytest.mark.parametrize(("body", "text"), [
    ({"image": [[[0, 0, 0]] * 4] * 3 + [[[0, 0]] * 4]}, "not a rectangular array"),
    ({"image": [[0] * 30] * 20}, "expected [H, W, 3]"),
    ({"image": [[[0, 0, 0, 0]] * 30] * 20}, "shape [20, 30, 4]"),
])
def test_arrays_that_are_no_colour_image_are_refused(photo_handler, body, text):
    answer = photo_handler.one(body)
    assert answer.status == 400 and text in answer.json()["message"], answer.json()


def test_a_pixel_array_over_max_pixels_is_413(tmp_path):
    config = {"maxWorkers": 1, "handler": {"name": "image_classifier", "image": {**PHOTO_IMAGE, "max_pixels": 10_000}}}
    served = serve(tmp_path, ImageClassifier, photo_model(), config, {str(i): str(i) for i in range(CLASSES)})
    answer = served.one({"image": np.zeros((101, 100, 3), dtype=np.uint8).tolist()})
    assert answer.status == 413 and "101 = 10100 pixels" in answer.json()["message"]
