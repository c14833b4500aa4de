"""The digit_segmenter demo model: ``DigitSegmenter`` (U-Net-like) trained on canvases of 1 to 4 generated
handwritten digits to label each pixel background or one of the ten digits; per-class IoU and their mean on
held-out canvases (held-out glyph sources), at the model's size and at another size stretched to it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from examples.demo_models import scene_export
from examples.demo_models.scene_metrics import class_iou
from examples.demo_models.scene_training import (
    SCENE_INPUT,
    SCENE_TRAINING,
    stretched,
    to_input,
    train_scene_model,
)
from examples.demo_models.scenes import NUM_CLASSES, SceneSet
from examples.demo_models.training import Log, export_and_check, require, write_json
from toolkit.export.detection import DigitSegmenter

NAME = "digit_segmenter"
CLASS_NAMES = ["background", *(str(d) for d in range(NUM_CLASSES))]
MIN_MEAN_IOU = 0.6
SAMPLES = 4
# Digit pixels are few: their cross-entropy weighs this much more than the background's.
DIGIT_WEIGHT = 3.0


def segmenter_loss(model: DigitSegmenter, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Pixel cross-entropy, digit classes weighted ``DIGIT_WEIGHT``."""
    x, mask = batch
    weight = torch.full((NUM_CLASSES + 1,), DIGIT_WEIGHT)
    weight[0] = 1.0
    return F.cross_entropy(model(x), mask, weight=weight)


def segmenter_batches(scenes: SceneSet, batch_size: int, rng: np.random.Generator) -> list[tuple[torch.Tensor, ...]]:
    """Shuffled batches (input, class mask int64) of ``scenes``."""
    x, mask = to_input(scenes.images), torch.from_numpy(scenes.masks.astype(np.int64))
    order = torch.from_numpy(rng.permutation(len(x)))
    return [(x[idx], mask[idx]) for idx in order.split(batch_size)]


def segment(model: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    """Class maps uint8 ``(N, H, W)`` (argmax of the logits) of canvases at the model's size."""
    with torch.inference_mode():
        maps = [model(to_input(images[i : i + 64])).argmax(1) for i in range(0, len(images), 64)]
    return torch.cat(maps).numpy().astype(np.uint8)


def back_to_size(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    """Class maps resized to (height, width) by nearest neighbour (as a handler answers at the request's size)."""
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(m).resize((width, height), Image.Resampling.NEAREST)) for m in maps])


def digit_names(class_map: np.ndarray) -> list[str]:
    """The sorted names of the digit classes present in a class map (background left out)."""
    return sorted(CLASS_NAMES[c] for c in np.unique(class_map) if c)


def held_out_metrics(model: torch.nn.Module, held: dict[str, SceneSet]) -> dict[str, dict]:
    """Per-class IoU and mean IoU per held-out set; other-size canvases are stretched to the model's size and
    the class map brought back to their own size."""
    metrics = {}
    for name, scenes in held.items():
        height, width = scenes.images.shape[1:]
        at_size = (height, width) == (SCENE_INPUT.height, SCENE_INPUT.width)
        maps = segment(model, scenes.images if at_size else stretched(scenes.images))
        if not at_size:
            maps = back_to_size(maps, height, width)
        iou = class_iou(maps, scenes.masks, NUM_CLASSES + 1)
        metrics[name] = {"mean_iou": round(float(np.nanmean(iou)), 4),
                         "digit_mean_iou": round(float(np.nanmean(iou[1:])), 4),
                         "pixel_accuracy": round(float((maps == scenes.masks).mean()), 4),
                         "class_iou": {n: round(float(v), 4) for n, v in zip(CLASS_NAMES, iou, strict=True)}}
    return metrics


def build(out_dir: Path, seed: int, log: Log) -> dict:
    """Build the digit_segmenter model directory; returns its metrics; raises ``BuildError``."""
    model, train_seconds, held = train_scene_model(DigitSegmenter, segmenter_batches, segmenter_loss, seed, log)
    scenes = held["model_size"]
    scripted, checks = export_and_check(model, to_input(scenes.images), out_dir, NAME, log)
    figures = held_out_metrics(scripted, held)
    log("held-out mean IoU " + ", ".join(f"{k}: {v['mean_iou']:.3f}" for k, v in figures.items()))
    metrics = {
        "model": NAME, "arch": "digit_segmenter", "seed": seed, "torch_version": torch.__version__,
        "train_seconds": round(train_seconds, 2), "train_config": vars(SCENE_TRAINING),
        "input": SCENE_INPUT.model_dump(),
        "summary": {f"{k}_mean_iou": v["mean_iou"] for k, v in figures.items()},
        "heldout": figures, "checks": checks, "thresholds": {"mean_iou": MIN_MEAN_IOU},
    }
    write_json(out_dir / "index_to_name.json", {str(i): name for i, name in enumerate(CLASS_NAMES)})
    present = [digit_names(mask) for mask in scenes.masks]
    chosen = [i for i, found in enumerate(segment(scripted, scenes.images)) if digit_names(found) == present[i]]
    require(len(chosen) >= SAMPLES, f"{NAME}: fewer than {SAMPLES} held-out canvases with exactly their classes found")
    scene_export.write_scene_samples(out_dir / "samples", scenes, present, chosen[:SAMPLES])
    write_json(out_dir / "metrics.json", metrics)
    mean_iou = figures["model_size"]["mean_iou"]
    require(mean_iou >= MIN_MEAN_IOU, f"{NAME} held-out mean IoU {mean_iou} < {MIN_MEAN_IOU}")
    return metrics
