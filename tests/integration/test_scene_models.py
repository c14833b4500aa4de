"""The built scene models (`make models` -> build/models/digit_detector/, digit_segmenter/): output format of
their TorchScript and ONNX exports, their held-out figures recomputed, their samples and labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from examples.demo_models import digit_detector, digit_segmenter, scene_training
from examples.demo_models.scene_metrics import class_iou, detection_counts
from examples.demo_models.scenes import SceneConfig, render_scenes
from handlers.backends import optimize_torchscript
from tests.paths import BUILD, require_built
from toolkit.export.torchscript import load_torchscript

SEED = 7  # canvases of these tests, unlike the build's


def model_dir(name: str) -> Path:
    return require_built(BUILD / name / f"{name}.pt", "make models").parent


@pytest.fixture(scope="module")
def canvases():
    """Held-out canvases of this test's own seed (held-out glyph sources, as the build's figures use)."""
    _, held = scene_training.glyph_pools(SEED, 10, 400, lambda _message: None)
    return render_scenes(held, SceneConfig(), 60, np.random.default_rng(SEED))


def sample_images(folder: Path) -> tuple[dict, np.ndarray]:
    expected = json.loads((folder / "samples" / "expected.json").read_text())
    images = []
    for file_name in expected:
        with Image.open(folder / "samples" / file_name) as img:
            assert img.mode == "L" and img.size == (128, 128)
            images.append(np.asarray(img))
    return expected, np.stack(images)


def test_detector_outputs_padded_batched_detections_in_input_pixels(canvases) -> None:
    scripted = load_torchscript(model_dir("digit_detector") / "digit_detector.pt")
    x = scene_training.to_input(canvases.images[:5])
    with torch.inference_mode():
        out = scripted(x)
    assert set(out) == {"boxes", "scores", "labels"}
    assert out["boxes"].shape == (5, 10, 4) and out["boxes"].dtype == torch.float32
    assert out["scores"].shape == (5, 10) and out["labels"].shape == (5, 10) and out["labels"].dtype == torch.int64
    assert (out["scores"][:, :-1] >= out["scores"][:, 1:]).all()
    kept, padding = out["scores"] > 0, out["scores"] == 0
    assert (kept | padding).all() and (out["labels"][padding] == -1).all() and (out["boxes"][padding] == 0).all()
    assert ((out["labels"][kept] >= 0) & (out["labels"][kept] <= 9)).all()
    boxes = out["boxes"][kept]
    assert (boxes[:, 0] < boxes[:, 2]).all() and (boxes[:, 1] < boxes[:, 3]).all()
    assert (boxes >= 0).all() and (boxes <= 128).all()


def test_detector_finds_the_digits_of_canvases_it_never_saw(canvases) -> None:
    scripted = load_torchscript(model_dir("digit_detector") / "digit_detector.pt")
    found = digit_detector.detect(scripted, canvases.images)
    counts = detection_counts(found, list(zip(canvases.boxes, canvases.labels, strict=True)),
                              digit_detector.SCORE_THRESHOLD, digit_detector.IOU_THRESHOLD)
    assert counts.precision >= 0.85 and counts.recall >= 0.85, counts


def test_detector_onnx_and_served_forward_match_torchscript(canvases) -> None:
    folder = model_dir("digit_detector")
    scripted = load_torchscript(folder / "digit_detector.pt")
    x = scene_training.to_input(canvases.images[:16])
    session = ort.InferenceSession(str(folder / "digit_detector.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"] and session.get_inputs()[0].shape[0] == "batch"
    names = [o.name for o in session.get_outputs()]
    assert names == ["boxes", "scores", "labels"]
    onnx_out = dict(zip(names, session.run(names, {"input": x.numpy()}), strict=True))
    with torch.inference_mode():
        reference = {k: v.numpy() for k, v in scripted(x).items()}
        served = {k: v.numpy() for k, v in optimize_torchscript(scripted)(x).items()}
    for actual in (onnx_out, served):
        strong = reference["scores"] >= 0.1
        assert np.array_equal(actual["labels"][strong], reference["labels"][strong])
        assert np.abs(actual["scores"] - reference["scores"]).max() <= 1e-4
        assert np.abs(actual["boxes"][strong] - reference["boxes"][strong]).max() <= 1e-2


def test_detector_metrics_labels_and_samples() -> None:
    folder = model_dir("digit_detector")
    metrics = json.loads((folder / "metrics.json").read_text())
    for figures in metrics["heldout"].values():
        assert figures["precision"] >= 0.9 and figures["recall"] >= 0.9
    assert json.loads((folder / "index_to_name.json").read_text()) == {str(i): str(i) for i in range(10)}
    expected, images = sample_images(folder)
    found = digit_detector.detect(load_torchscript(folder / "digit_detector.pt"), images)
    for (_, scores, labels), digits in zip(found, expected.values(), strict=True):
        assert sorted(str(d) for d in labels[scores >= digit_detector.SCORE_THRESHOLD]) == digits


def test_segmenter_outputs_class_logits_at_input_size(canvases) -> None:
    folder = model_dir("digit_segmenter")
    scripted = load_torchscript(folder / "digit_segmenter.pt")
    x = scene_training.to_input(canvases.images[:4])
    with torch.inference_mode():
        logits = scripted(x)
    assert logits.shape == (4, 11, 128, 128) and logits.dtype == torch.float32
    session = ort.InferenceSession(str(folder / "digit_segmenter.onnx"), providers=["CPUExecutionProvider"])
    onnx_logits = session.run(["output"], {"input": x.numpy()})[0]
    assert np.abs(onnx_logits - logits.numpy()).max() <= 1e-4


def test_segmenter_labels_the_digits_of_canvases_it_never_saw(canvases) -> None:
    folder = model_dir("digit_segmenter")
    maps = digit_segmenter.segment(load_torchscript(folder / "digit_segmenter.pt"), canvases.images)
    iou = class_iou(maps, canvases.masks, 11)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert np.nanmean(iou) >= metrics["thresholds"]["mean_iou"]
    labels = json.loads((folder / "index_to_name.json").read_text())
    assert labels == {"0": "background", **{str(d + 1): str(d) for d in range(10)}}
    expected, images = sample_images(folder)
    found = digit_segmenter.segment(load_torchscript(folder / "digit_segmenter.pt"), images)
    for classes, names in zip(found, expected.values(), strict=True):
        assert digit_segmenter.digit_names(classes) == names
