"""Held-out figures of the scene models: detection precision and recall at an IoU threshold with the right class,
and the segmentation's per-class IoU."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DetectionCounts:
    """True positives, false positives and false negatives summed over images."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __add__(self, other: DetectionCounts) -> DetectionCounts:
        return DetectionCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    @property
    def precision(self) -> float:
        """TP / (TP + FP); 1.0 when nothing was detected."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        """TP / (TP + FN); 1.0 when there was nothing to find."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix ``(len(a), len(b))`` of boxes ``(x1, y1, x2, y2)``."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def match_image(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, truth_boxes: np.ndarray,
                truth_labels: np.ndarray, iou_threshold: float = 0.5) -> DetectionCounts:
    """Greedy matching, best score first: a detection is a true positive when an unmatched true box of the same
    label overlaps it by ``iou_threshold`` or more (the best such box is taken), else a false positive; true
    boxes left unmatched are false negatives. Pass only the detections kept (above the score threshold)."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    iou = box_iou(np.asarray(boxes)[order], truth_boxes)
    taken = np.zeros(len(truth_labels), dtype=bool)
    tp = 0
    for row, label in enumerate(np.asarray(labels)[order]):
        candidates = np.where((np.asarray(truth_labels) == label) & ~taken, iou[row], -1.0)
        best = int(np.argmax(candidates)) if len(candidates) else -1
        if best >= 0 and candidates[best] >= iou_threshold:
            taken[best] = True
            tp += 1
    return DetectionCounts(tp, len(order) - tp, int((~taken).sum()))


def detection_counts(detections: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
                     truth: Sequence[tuple[np.ndarray, np.ndarray]], score_threshold: float,
                     iou_threshold: float = 0.5) -> DetectionCounts:
    """``match_image`` summed over images: ``detections`` (boxes, scores, labels) and ``truth`` (boxes, labels)
    per image; detections under ``score_threshold`` are dropped first."""
    total = DetectionCounts()
    for (boxes, scores, labels), (truth_boxes, truth_labels) in zip(detections, truth, strict=True):
        keep = np.asarray(scores) >= score_threshold
        total = total + match_image(np.asarray(boxes)[keep], np.asarray(scores)[keep], np.asarray(labels)[keep],
                                    truth_boxes, truth_labels, iou_threshold)
    return total


def class_iou(predicted: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-class IoU ``(num_classes,)`` of two class maps of equal shape, over all their pixels (NaN for a class
    absent from both)."""
    predicted, truth = np.asarray(predicted).ravel(), np.asarray(truth).ravel()
    confusion = np.bincount(truth.astype(np.int64) * num_classes + predicted, minlength=num_classes**2)
    confusion = confusion.reshape(num_classes, num_classes)
    inter = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - np.diag(confusion)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, np.nan)
