"""handlers.boxes against references written here in plain Python (no NumPy): IoU of two boxes, and greedy
class-wise non-maximum suppression as torchvision's batched_nms defines it."""

from __future__ import annotations

import numpy as np
import pytest

from handlers.boxes import box_iou, class_wise_nms, nms


def iou_of(a: list[float], b: list[float]) -> float:
    """IoU of two (x1, y1, x2, y2) boxes, the textbook way."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def reference_nms(boxes: list, scores: list, labels: list, threshold: float) -> list[int]:
    """Visit the boxes best score first (ties: lower index first); keep one unless a kept box of its label
    overlaps it by IoU > threshold. The kept indices, best score first."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    kept: list[int] = []
    for i in order:
        if all(labels[j] != labels[i] or iou_of(boxes[i], boxes[j]) <= threshold for j in kept):
            kept.append(i)
    return kept


def random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    """n boxes in a 100x100 image, clustered so that many overlap."""
    centres = rng.uniform(20, 80, size=(4, 2))[rng.integers(0, 4, size=n)] + rng.normal(0, 6, size=(n, 2))
    sizes = rng.uniform(8, 30, size=(n, 2))
    return np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1)


def test_iou_matrix_matches_the_textbook_formula():
    rng = np.random.default_rng(0)
    a, b = random_boxes(rng, 20), random_boxes(rng, 15)
    want = [[iou_of(list(x), list(y)) for y in b] for x in a]
    assert np.allclose(box_iou(a, b), want, atol=1e-12)


def test_iou_of_degenerate_boxes_is_zero():
    flat = np.array([[5.0, 5.0, 5.0, 9.0]])
    assert box_iou(flat, flat).tolist() == [[0.0]]


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_class_wise_nms_matches_the_reference(seed: int, threshold: float):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    boxes = random_boxes(rng, n)
    scores = np.round(rng.uniform(0, 1, size=n), 2)  # rounded: ties happen
    labels = rng.integers(0, 3, size=n)
    want = reference_nms(boxes.tolist(), scores.tolist(), labels.tolist(), threshold)
    got = class_wise_nms(boxes, scores, labels, threshold)
    assert sorted(got.tolist()) == sorted(want)
    assert list(scores[got]) == sorted(scores[want], reverse=True)


def test_single_class_nms_keeps_the_best_of_a_cluster_and_a_distant_box():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 9, 9], [50, 50, 60, 60]], dtype=float)
    assert nms(boxes, np.array([0.5, 0.9, 0.7, 0.1]), 0.5).tolist() == [1, 3]


def test_nothing_in_nothing_out():
    empty = np.zeros((0, 4))
    assert class_wise_nms(empty, np.zeros(0), np.zeros(0, dtype=np.int64), 0.5).tolist() == []
