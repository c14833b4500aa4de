"""Digits in a scene: the canvas generator, the detector's targets and decoding, the held-out figures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from examples.demo_models import handwriting, scenes
from examples.demo_models.digit_detector import centre_targets, focal_loss
from examples.demo_models.scene_metrics import DetectionCounts, box_iou, class_iou, detection_counts, match_image
from handlers.imaging import INK_FRACTION
from toolkit.export.detection import DigitDetector, DigitSegmenter, decode_centres
from toolkit.export.torchscript import to_torchscript


@pytest.fixture(scope="module")
def pool() -> scenes.GlyphPool:
    generator = handwriting.DigitGenerator(handwriting.GeneratorConfig(weights=(1.0, 0.0, 0.0)))
    return scenes.GlyphPool.draw(generator, 60, np.random.default_rng(0))


@pytest.fixture(scope="module")
def canvases(pool: scenes.GlyphPool) -> scenes.SceneSet:
    config = scenes.SceneConfig(background=(0.0, 0.0), noise=(0.0, 0.0))
    return scenes.render_scenes(pool, config, 40, np.random.default_rng(1))


def test_glyph_pool_is_balanced(pool: scenes.GlyphPool) -> None:
    assert pool.glyphs.shape == (60, 64, 64) and pool.glyphs.dtype == np.uint8
    assert np.bincount(pool.labels).tolist() == [6] * 10


def test_canvases_hold_one_to_four_digits_of_the_asked_sizes(canvases: scenes.SceneSet) -> None:
    assert canvases.images.shape == canvases.masks.shape == (40, 128, 128)
    assert canvases.images.dtype == canvases.masks.dtype == np.uint8
    counts = [len(labels) for labels in canvases.labels]
    assert min(counts) >= 1 and max(counts) <= 4 and len(set(counts)) > 1
    for boxes, labels in zip(canvases.boxes, canvases.labels, strict=True):
        assert boxes.shape == (len(labels), 4) and boxes.dtype == np.float32 and labels.dtype == np.int64
        longer = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        assert ((longer >= 20) & (longer <= 48)).all()
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 128).all() and (boxes[:, 3] <= 128).all()


def test_boxes_are_the_ink_of_the_pasted_digits(canvases: scenes.SceneSet) -> None:
    """On a black canvas each box holds ink touching all four of its sides, and no ink lies outside all boxes."""
    for image, boxes in zip(canvases.images, canvases.boxes, strict=True):
        inside = np.zeros(image.shape, dtype=bool)
        for x1, y1, x2, y2 in boxes.astype(int):
            patch = image[y1:y2, x1:x2] > INK_FRACTION * 255 * 0.3  # faint digits are dimmed down to 0.4
            assert patch[0].any() and patch[-1].any() and patch[:, 0].any() and patch[:, -1].any()
            inside[y1:y2, x1:x2] = True
        assert not image[~inside].any()


def test_masks_label_each_digit_inside_its_own_box(canvases: scenes.SceneSet) -> None:
    for mask, boxes, labels in zip(canvases.masks, canvases.boxes, canvases.labels, strict=True):
        allowed = np.zeros((11, *mask.shape), dtype=bool)
        allowed[0] = True
        for (x1, y1, x2, y2), label in zip(boxes.astype(int), labels, strict=True):
            allowed[1 + label, y1:y2, x1:x2] = True
        rows, cols = np.indices(mask.shape)
        assert allowed[mask, rows, cols].all()
        assert set(np.unique(mask)) - {0} == {1 + int(d) for d in labels}


def test_overlap_stays_light(canvases: scenes.SceneSet) -> None:
    for boxes in canvases.boxes:
        iou = box_iou(boxes, boxes)
        np.fill_diagonal(iou, 0.0)
        assert (iou <= 0.15).all()


def test_scenes_are_seeded_and_scale_to_another_canvas_size(pool: scenes.GlyphPool) -> None:
    config = scenes.SceneConfig(width=192, height=160, digit_px=(28, 64))
    first = scenes.render_scenes(pool, config, 5, np.random.default_rng(3))
    again = scenes.render_scenes(pool, config, 5, np.random.default_rng(3))
    assert first.images.shape == (5, 160, 192)
    assert np.array_equal(first.images, again.images) and np.array_equal(first.masks, again.masks)
    assert all(np.array_equal(a, b) for a, b in zip(first.boxes, again.boxes, strict=True))


def test_centre_targets_peak_on_the_centre_cell_of_the_right_class() -> None:
    boxes = np.array([[10, 20, 40, 60], [80, 80, 100, 100]], dtype=np.float32)
    heat, reg, mask = centre_targets(boxes, np.array([3, 7]), (32, 32), 4)
    assert heat.shape == (10, 32, 32) and reg.shape == (4, 32, 32) and mask.shape == (32, 32)
    assert heat[3, 10, 6] == 1.0 and heat[7, 22, 22] == 1.0 and (heat == 1.0).sum() == 2
    assert mask.sum() == 2 and mask[10, 6] == 1 and mask[22, 22] == 1
    assert np.allclose(reg[:, 10, 6], [0.25, 0.0, np.log(30 / 4), np.log(40 / 4)])


def test_decoding_inverts_the_targets() -> None:
    """Heatmap logits and regression built from boxes decode back to those boxes, labels and high scores."""
    boxes = np.array([[10, 20, 40, 60], [80, 80, 100, 100]], dtype=np.float32)
    heat, reg, _ = centre_targets(boxes, np.array([3, 7]), (32, 32), 4)
    logits = torch.logit(torch.from_numpy(heat).clamp(1e-4, 1 - 0.999e-4))[None]
    box = torch.from_numpy(reg)[None].clone()
    box[:, :2] = torch.logit(box[:, :2].clamp(1e-4, 1 - 1e-4))
    out = decode_centres(logits, box, 4, 10, 0.05)
    order = out["labels"][0, :2].argsort()  # equal scores: either may come first
    assert out["labels"][0, :2][order].tolist() == [3, 7]
    assert torch.allclose(out["boxes"][0, :2][order], torch.from_numpy(boxes), atol=0.05)
    assert (out["scores"][0, :2] > 0.99).all()
    assert (out["scores"][0, 2:] == 0).all() and (out["labels"][0, 2:] == -1).all()
    assert (out["boxes"][0, 2:] == 0).all()


def test_focal_loss_is_lower_for_the_right_heatmap() -> None:
    target = torch.zeros(1, 10, 8, 8)
    target[0, 2, 3, 3] = 1.0
    right = torch.logit(target.clamp(0.01, 0.99))
    wrong = torch.logit(torch.roll(target, 1, dims=1).clamp(0.01, 0.99))
    assert focal_loss(right, target) < 0.1 < focal_loss(wrong, target)


@pytest.mark.parametrize("size", [(128, 128), (96, 160)])
def test_untrained_architectures_give_the_output_contract(size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 1, *size)
    detector, segmenter = DigitDetector().eval(), DigitSegmenter().eval()
    with torch.inference_mode():
        found, logits = detector(x), segmenter(x)
    assert set(found) == {"boxes", "scores", "labels"}
    assert found["boxes"].shape == (3, 10, 4) and found["boxes"].dtype == torch.float32
    assert found["scores"].shape == (3, 10) and found["labels"].shape == (3, 10)
    assert found["labels"].dtype == torch.int64
    assert (found["scores"][:, :-1] >= found["scores"][:, 1:]).all()  # best first
    assert (found["boxes"][..., 2] <= size[1]).all() and (found["boxes"][..., 3] <= size[0]).all()
    assert logits.shape == (3, 11, *size)


def test_architectures_script_to_the_same_outputs() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 1, 128, 128)
    for model in (DigitDetector().eval(), DigitSegmenter().eval()):
        scripted = to_torchscript(model)
        with torch.inference_mode():
            eager, script = model(x), scripted(x)
        pairs = [(eager[k], script[k]) for k in eager] if isinstance(eager, dict) else [(eager, script)]
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in pairs)


def test_matching_needs_the_right_digit_and_enough_overlap() -> None:
    truth_boxes = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], dtype=np.float32)
    truth_labels = np.array([1, 2])
    boxes = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [21, 21, 31, 31], [0, 0, 4, 4]], dtype=np.float32)
    counts = match_image(boxes, np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 5, 2, 1]), truth_boxes, truth_labels)
    # box 0: right; box 1: wrong digit; box 2: IoU 0.68 with the 2 -> right; box 3: IoU 0.16 -> false positive
    assert counts == DetectionCounts(tp=2, fp=2, fn=0)
    assert counts.precision == 0.5 and counts.recall == 1.0
    kept = detection_counts([(boxes, np.array([0.9, 0.2, 0.2, 0.2]), np.array([1, 5, 2, 1]))],
                            [(truth_boxes, truth_labels)], score_threshold=0.5)
    assert kept == DetectionCounts(tp=1, fp=0, fn=1)


def test_class_iou_counts_over_all_pixels() -> None:
    truth = np.array([[0, 0, 1, 1], [0, 0, 2, 2]])
    predicted = np.array([[0, 0, 1, 2], [0, 0, 2, 2]])
    iou = class_iou(predicted, truth, 4)
    assert iou[0] == 1.0 and iou[1] == 0.5 and iou[2] == pytest.approx(2 / 3) and np.isnan(iou[3])
