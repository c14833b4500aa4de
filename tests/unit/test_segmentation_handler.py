"""ImageSegmenter through TorchServe's Context: the class map at the request image's size against a reference
computed here (PIL's stretch, the model, F.interpolate, argmax), the PNG (base64 in JSON, or itself for
`Accept: image/png`), class fractions and the background, letterbox undone, OIP's UINT8 class map, start checks."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from handlers.errors import ModelConfigError
from handlers.segmentation import ImageSegmenter, accepts_png
from tests.served import png_bytes, serve
from tests.unit.detection_models import IMAGE, InkClasses, canvas
from tests.unit.test_oip import frame, outputs_of, send, tensor
from toolkit.archive.worker import Request

LABELS = {"0": "background", "1": "ink", "2": "bright"}
RECTS = [(10, 8, 60, 30, 180), (70, 20, 110, 70, 255)]  # dim ink (class 1), bright ink (class 2)


def segmenter(tmp_path, image: dict | None = None, labels: dict | None = None, **segmentation) -> object:
    handler = {"name": "image_segmenter", "max_inputs_per_request": 4, "image": image or IMAGE}
    if segmentation:
        handler["segmentation"] = segmentation
    return serve(tmp_path, ImageSegmenter, InkClasses(), {"batchSize": 4, "handler": handler}, labels or LABELS)


def decoded(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert (image.format, image.mode) == ("PNG", "P")
    return np.asarray(image)


def answered(answer) -> dict:
    body = answer.json()
    assert answer.status == 200, body
    return body


def reference_map(pixels: np.ndarray) -> np.ndarray:
    """The class map of a stretch-fitted image: PIL's bilinear resize to 32x32 (torchvision's Resize), the
    model, its logits upsampled bilinearly to the image's size (F.interpolate), argmax."""
    height, width = pixels.shape
    small = np.asarray(Image.fromarray(pixels).resize((32, 32), Image.Resampling.BILINEAR), dtype=np.float32)
    x = torch.from_numpy((small / 255 - 0.5) / 0.5)[None, None]
    logits = InkClasses()(x)
    return F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False).argmax(1)[0].numpy()


def test_the_class_map_is_at_the_request_size_and_matches_the_reference(tmp_path):
    pixels = canvas(120, 90, RECTS)
    body = answered(segmenter(tmp_path).one(png_bytes(pixels)))
    classes = decoded(base64.b64decode(body["mask"]))
    assert (body["width"], body["height"], classes.shape) == (120, 90, (90, 120))
    assert (classes == reference_map(pixels)).mean() > 0.999
    truth = np.zeros((90, 120), np.uint8)
    truth[8:30, 10:60], truth[20:70, 70:110] = 1, 2
    ink, want = classes > 0, truth > 0  # (the model's class 2 needs more than half intensity: blurred edges shrink it)
    assert (ink & want).sum() / (ink | want).sum() > 0.9


def test_fractions_list_the_classes_present_and_sum_to_one(tmp_path):
    pixels = canvas(64, 64, [(0, 0, 32, 64, 180)])  # the left half is ink
    body = answered(segmenter(tmp_path).one(png_bytes(pixels)))
    assert [(c["index"], c["label"]) for c in body["classes"]] == [(0, "background"), (1, "ink")]
    assert sum(c["fraction"] for c in body["classes"]) == pytest.approx(1.0, abs=1e-5)
    assert body["classes"][1]["fraction"] == pytest.approx(0.5, abs=0.02)
    assert "background_fraction" not in body


def test_a_background_class_is_reported_apart(tmp_path):
    pixels = canvas(64, 64, [(0, 0, 32, 64, 180)])
    body = answered(segmenter(tmp_path, background=0).one(png_bytes(pixels)))
    assert [c["label"] for c in body["classes"]] == ["ink"]
    assert body["background_fraction"] + body["classes"][0]["fraction"] == pytest.approx(1.0, abs=1e-5)


def test_a_model_size_image_is_the_argmax_of_its_logits(tmp_path):
    pixels = canvas(32, 32, [(3, 3, 20, 9, 180), (22, 10, 30, 30, 255)])
    x = torch.from_numpy((pixels.astype(np.float32) / 255 - 0.5) / 0.5)[None, None]
    body = answered(segmenter(tmp_path).one(png_bytes(pixels)))
    assert np.array_equal(decoded(base64.b64decode(body["mask"])), InkClasses()(x).argmax(1)[0].numpy())


def test_letterbox_padding_is_undone(tmp_path):
    pixels = canvas(64, 32, [(8, 4, 40, 28, 255)])
    body = answered(segmenter(tmp_path, {**IMAGE, "fit": "letterbox"}).one(png_bytes(pixels)))
    classes = decoded(base64.b64decode(body["mask"]))
    assert classes.shape == (32, 64)
    # by hand: 64x32 -> 32x16 (PIL bilinear), pasted at row 8 of a black 32x32 input; the logits of those 16 rows
    # upsampled to 32x64
    small = np.asarray(Image.fromarray(pixels).resize((32, 16), Image.Resampling.BILINEAR), dtype=np.float32)
    boxed = np.zeros((32, 32), np.float32)
    boxed[8:24] = small
    logits = InkClasses()(torch.from_numpy((boxed / 255 - 0.5) / 0.5)[None, None])[:, :, 8:24]
    want = F.interpolate(logits, size=(32, 64), mode="bilinear", align_corners=False).argmax(1)[0].numpy()
    assert (classes == want).mean() > 0.99


def test_accept_png_answers_the_png_itself(tmp_path):
    served = segmenter(tmp_path)
    pixels = canvas(50, 40, RECTS[:1])
    json_answer = answered(served.one(png_bytes(pixels)))
    answer = served.one(Request(png_bytes(pixels), "image/png", {"Accept": "image/png"}))
    assert (answer.status, answer.content_type) == (200, "image/png")
    assert np.array_equal(decoded(answer.body), decoded(base64.b64decode(json_answer["mask"])))


def test_accept_png_with_a_list_of_images_is_406_and_its_batch_mates_are_answered(tmp_path):
    served = segmenter(tmp_path)
    one = base64.b64encode(png_bytes(canvas(32, 32, RECTS[:1]))).decode()
    listed = Request(f'{{"image": ["{one}", "{one}"]}}'.encode(), "application/json", {"Accept": "image/png"})
    answers = served.batch(listed, png_bytes(canvas(32, 32, [])))
    assert (answers[0].status, answers[0].json()["type"]) == (406, "not_acceptable")
    assert "send one image" in answers[0].json()["message"]
    assert answered(answers[1])["classes"] == [{"index": 0, "label": "background", "fraction": 1.0}]


def test_oip_answers_the_class_map_as_uint8(tmp_path):
    served = segmenter(tmp_path)
    pixels = np.stack([canvas(40, 24, RECTS[:1]), canvas(40, 24, [])])
    out = outputs_of(send(served, frame({"inputs": [tensor(pixels.tolist(), pixels.shape, "UINT8")]}))[0])
    assert list(out) == ["class_map"]
    assert (out["class_map"]["datatype"], out["class_map"]["shape"]) == ("UINT8", [2, 24, 40])
    maps = np.asarray(out["class_map"]["data"]).reshape(2, 24, 40)
    assert (maps[0] == reference_map(pixels[0])).mean() > 0.999
    assert not maps[1].any()


def test_labels_of_another_count_are_refused_at_start(tmp_path):
    with pytest.raises(ModelConfigError, match="3 classes but the labels file has 2"):
        segmenter(tmp_path, labels={"0": "a", "1": "b"})


def test_a_background_the_model_lacks_is_refused_at_start(tmp_path):
    with pytest.raises(ModelConfigError, match="background = 3"):
        segmenter(tmp_path, background=3)


def test_a_classifier_output_is_refused_at_start(tmp_path):
    handler = {"name": "image_segmenter", "image": IMAGE}
    with pytest.raises(ModelConfigError, match=r"needs \(n, classes, H, W\)"):
        serve(tmp_path, ImageSegmenter, torch.nn.Flatten(), {"handler": handler}, LABELS)


@pytest.mark.parametrize(("accept", "png"), [
    ("image/png", True), ("application/json, image/png;q=0.5", True), ("IMAGE/PNG", True),
    ("image/png;q=0", False), ("*/*", False), ("application/json", False), (None, False),
])
def test_accept_header(accept, png):
    assert accepts_png(accept) is png
