"""Box arithmetic of the object detector: IoU and class-wise non-maximum suppression, in NumPy.

Boxes are (k, 4) arrays of (x1, y1, x2, y2) in continuous pixels (x1 <= x2, y1 <= y2); a box of zero width or
height has zero area and overlaps nothing.
"""

from __future__ import annotations

import numpy as np


def box_area(boxes: np.ndarray) -> np.ndarray:
    """(k,) areas of (k, 4) boxes (0 for a degenerate box)."""
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) intersection over union of two sets of boxes; 0 where the union is empty."""
    width = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    height = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = width * height
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter, dtype=np.float64), where=union > 0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression of one class: indices of the boxes kept, best score first (ties: the
    lower index first). A box whose IoU with a kept, better one is above `iou_threshold` is dropped
    (torchvision.ops.nms's rule)."""
    order = np.argsort(-scores, kind="stable")
    iou = box_iou(boxes[order], boxes[order])
    suppressed = np.zeros(len(order), dtype=bool)
    kept = []
    for rank in range(len(order)):
        if suppressed[rank]:
            continue
        kept.append(order[rank])
        suppressed |= iou[rank] > iou_threshold
    return np.asarray(kept, dtype=np.int64)


def class_wise_nms(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou_threshold: float) -> np.ndarray:
    """`nms` within each class (boxes of different labels never suppress each other: torchvision's
    batched_nms): the indices kept over all classes, best score first."""
    kept = [np.flatnonzero(labels == label)[nms(boxes[labels == label], scores[labels == label], iou_threshold)]
            for label in np.unique(labels)]
    merged = np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)
    return merged[np.argsort(-scores[merged], kind="stable")]
