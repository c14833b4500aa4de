"""The digit_detector demo model: ``DigitDetector`` (CenterNet-like, decoding inside the model) trained on canvases
of 1 to 4 generated handwritten digits; precision and recall at IoU >= 0.5 with the right digit on held-out
canvases (held-out glyph sources) sent at the model's size and at another size stretched to it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from examples.demo_models import scene_export
from examples.demo_models.scene_metrics import DetectionCounts, detection_counts
from examples.demo_models.scene_training import (
    SCENE_INPUT,
    SCENE_TRAINING,
    stretched,
    to_input,
    train_scene_model,
)
from examples.demo_models.scenes import NUM_CLASSES, SceneSet
from examples.demo_models.training import Log, require, write_json
from toolkit.export.detection import DigitDetector

NAME = "digit_detector"
SCORE_THRESHOLD = 0.3
IOU_THRESHOLD = 0.5
MIN_PRECISION = MIN_RECALL = 0.9
SAMPLES = 4
SIZE_LOSS_WEIGHT = 0.2


def centre_targets(boxes: np.ndarray, labels: np.ndarray, grid: tuple[int, int],
                   stride: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training targets of one canvas on a ``grid`` = (rows, cols) of ``stride``-px cells: heatmaps ``(C, rows,
    cols)`` (a Gaussian peaking at 1 on each box's centre cell, sigma a sixth of the box's mean side in cells),
    regression ``(4, rows, cols)`` (centre offset in its cell 0..1, log width and height in cells) and its mask
    ``(rows, cols)`` (1 on centre cells)."""
    rows, cols = grid
    heat = np.zeros((NUM_CLASSES, rows, cols), dtype=np.float32)
    reg = np.zeros((4, rows, cols), dtype=np.float32)
    mask = np.zeros((rows, cols), dtype=np.float32)
    ys, xs = np.mgrid[0:rows, 0:cols]
    for (x1, y1, x2, y2), label in zip(boxes, labels, strict=True):
        cx, cy = (x1 + x2) / 2 / stride, (y1 + y2) / 2 / stride
        col, row = min(int(cx), cols - 1), min(int(cy), rows - 1)
        sigma = max(0.5, ((x2 - x1) + (y2 - y1)) / 2 / stride / 6)
        heat[label] = np.maximum(heat[label], np.exp(-((xs - col) ** 2 + (ys - row) ** 2) / (2 * sigma**2)))
        reg[:, row, col] = (cx - col, cy - row, np.log((x2 - x1) / stride), np.log((y2 - y1) / stride))
        mask[row, col] = 1.0
    return heat, reg, mask


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss, summed and divided by the number of centres."""
    prob = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    positive = target.eq(1).to(logits.dtype)
    pos = -torch.log(prob) * (1 - prob) ** 2 * positive
    neg = -torch.log(1 - prob) * prob**2 * (1 - target) ** 4 * (1 - positive)
    return (pos.sum() + neg.sum()) / positive.sum().clamp(min=1.0)


def detector_loss(model: DigitDetector, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Focal loss on the heatmaps plus L1 on the centres' offsets and log-sizes."""
    x, heat, reg, mask = batch
    heat_logits, box = model.heads(x)
    weight = mask.unsqueeze(1)
    offset = F.l1_loss(torch.sigmoid(box[:, :2]) * weight, reg[:, :2] * weight, reduction="sum")
    size = F.l1_loss(box[:, 2:] * weight, reg[:, 2:] * weight, reduction="sum")
    return focal_loss(heat_logits, heat) + (offset + SIZE_LOSS_WEIGHT * size) / mask.sum().clamp(min=1.0)


def detector_batches(scenes: SceneSet, batch_size: int, rng: np.random.Generator) -> list[tuple[torch.Tensor, ...]]:
    """Shuffled batches (input, heatmaps, regression, mask) of ``scenes``."""
    stride = DigitDetector.STRIDE
    grid = (SCENE_INPUT.height // stride, SCENE_INPUT.width // stride)
    targets = [centre_targets(b, lab, grid, stride) for b, lab in zip(scenes.boxes, scenes.labels, strict=True)]
    x = to_input(scenes.images)
    heat, reg, mask = (torch.from_numpy(np.stack(parts)) for parts in zip(*targets, strict=True))
    order = torch.from_numpy(rng.permutation(len(x)))
    return [(x[idx], heat[idx], reg[idx], mask[idx]) for idx in order.split(batch_size)]


def detect(model: torch.nn.Module, images: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per canvas (boxes, scores, labels) of the model's padded output, in the model input's pixels."""
    with torch.inference_mode():
        out = [model(to_input(images[i : i + 64])) for i in range(0, len(images), 64)]
    boxes, scores, labels = (torch.cat([o[key] for o in out]).numpy() for key in ("boxes", "scores", "labels"))
    return list(zip(boxes, scores, labels, strict=True))


def held_out_metrics(model: torch.nn.Module, held: dict[str, SceneSet]) -> dict[str, dict[str, float]]:
    """Precision and recall on each held-out set; other-size canvases are stretched to the model's size and
    the boxes mapped back to their own pixels."""
    metrics = {}
    for name, scenes in held.items():
        height, width = scenes.images.shape[1:]
        scale = np.array([width / SCENE_INPUT.width, height / SCENE_INPUT.height] * 2, dtype=np.float32)
        images = scenes.images if (height, width) == (SCENE_INPUT.height, SCENE_INPUT.width) else stretched(
            scenes.images)
        found = [(boxes * scale, scores, labels) for boxes, scores, labels in detect(model, images)]
        counts = detection_counts(found, list(zip(scenes.boxes, scenes.labels, strict=True)), SCORE_THRESHOLD,
                                  IOU_THRESHOLD)
        metrics[name] = {"precision": round(counts.precision, 4), "recall": round(counts.recall, 4),
                         "digits": counts.tp + counts.fn, "tp": counts.tp, "fp": counts.fp, "fn": counts.fn}
    return metrics


def perfect_canvases(found: list[tuple[np.ndarray, np.ndarray, np.ndarray]], scenes: SceneSet) -> list[int]:
    """Indices of the canvases whose detections above ``SCORE_THRESHOLD`` are exactly their digits."""
    return [i for i, (boxes, scores, labels) in enumerate(found)
            if detection_counts([(boxes, scores, labels)], [(scenes.boxes[i], scenes.labels[i])], SCORE_THRESHOLD,
                                IOU_THRESHOLD) == DetectionCounts(len(scenes.labels[i]), 0, 0)]


def build(out_dir: Path, seed: int, log: Log) -> dict:
    """Build the digit_detector model directory; returns its metrics; raises ``BuildError``."""
    model, train_seconds, held = train_scene_model(DigitDetector, detector_batches, detector_loss, seed, log)
    x_held = to_input(held["model_size"].images)
    scripted, checks = scene_export.export_detector(model, x_held, out_dir, NAME, log)
    figures = held_out_metrics(scripted, held)
    log("held-out " + ", ".join(f"{k}: precision {v['precision']:.3f} recall {v['recall']:.3f}"
                                for k, v in figures.items()))
    metrics = {
        "model": NAME, "arch": "digit_detector", "seed": seed, "torch_version": torch.__version__,
        "train_seconds": round(train_seconds, 2), "train_config": vars(SCENE_TRAINING),
        "input": SCENE_INPUT.model_dump(), "score_threshold": SCORE_THRESHOLD, "iou_threshold": IOU_THRESHOLD,
        "summary": {f"{k}_{m}": v[m] for k, v in figures.items() for m in ("precision", "recall")},
        "heldout": figures, "checks": checks,
        "thresholds": {"precision": MIN_PRECISION, "recall": MIN_RECALL},
    }
    write_json(out_dir / "index_to_name.json", {str(i): str(i) for i in range(NUM_CLASSES)})
    scenes = held["model_size"]
    chosen = perfect_canvases(detect(scripted, scenes.images), scenes)[:SAMPLES]
    require(len(chosen) == SAMPLES, f"{NAME}: fewer than {SAMPLES} held-out canvases detected without a mistake")
    scene_export.write_scene_samples(out_dir / "samples", scenes,
                                     [sorted(str(int(d)) for d in labels) for labels in scenes.labels], chosen)
    write_json(out_dir / "metrics.json", metrics)
    for name, values in figures.items():
        require(values["precision"] >= MIN_PRECISION and values["recall"] >= MIN_RECALL,
                f"{NAME} {name}: precision {values['precision']} / recall {values['recall']} under "
                f"{MIN_PRECISION} / {MIN_RECALL}")
    return metrics
