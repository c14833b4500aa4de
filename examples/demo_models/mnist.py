"""The mnist demo model: ``MnistCNN`` trained on sklearn's 8×8 digits rendered in the MNIST layout, with
augmentation; stratified 20 % held-out split (never trained on), plus an out-of-distribution set of
font-rendered digits (accuracy reported, no threshold)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from examples.demo_models import digits, fonts
from examples.demo_models.training import (
    Split,
    TrainConfig,
    accuracy,
    export_and_check,
    fit,
    require,
    stratified_split,
    write_json,
)
from toolkit.export.architectures import MnistCNN
from toolkit.export.torchscript import predict

MIN_ACC = 0.97
# Fraction of training images left un-augmented in each epoch.
P_CLEAN = 0.2


def mnist_split(seed: int, log: Callable[[str], None]) -> Split:
    """sklearn digits rendered in the MNIST layout (uint8 (N, 28, 28)), stratified split."""
    from sklearn.datasets import load_digits

    data = load_digits()
    log(f"rendering {len(data.images)} sklearn digits in the MNIST layout")
    images = digits.render_sklearn_digits(data.images)
    return stratified_split(images, data.target, seed)


def train_mnist(split: Split, seed: int, log: Callable[[str], None]) -> tuple[MnistCNN, float, TrainConfig]:
    """Train ``MnistCNN`` on freshly augmented training images every epoch."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    config = TrainConfig(epochs=14, batch_size=64, lr=3e-3, weight_decay=1e-4)
    y = torch.from_numpy(split.y_train)

    def epoch_data(_epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        augmented = digits.augment_batch(split.x_train, rng, p_clean=P_CLEAN)
        return torch.from_numpy(digits.normalize(augmented)), y

    model = MnistCNN()
    log(f"training on {len(y)} images, {config.epochs} epochs of fresh augmentations")
    seconds = fit(model, epoch_data, config, log)
    return model, seconds, config


def build(out_dir: Path, seed: int, log: Callable[[str], None]) -> dict:
    """Build the mnist model directory; returns its metrics; raises ``BuildError``."""
    split = mnist_split(seed, log)
    model, train_seconds, config = train_mnist(split, seed, log)
    x_held = torch.from_numpy(digits.normalize(split.x_held))
    scripted, checks = export_and_check(model, x_held, out_dir, "mnist", log)
    pred = predict(scripted, x_held).argmax(1).numpy().astype(np.int64)
    held_acc = accuracy(pred, split.y_held)
    log("rendering the out-of-distribution font digits")
    ood = fonts.build_font_digit_set(fonts.font_sources())
    ood_pred = predict(scripted, torch.from_numpy(digits.normalize(ood.x))).argmax(1).numpy()
    metrics = {
        "model": "mnist", "arch": "mnist_cnn", "seed": seed, "torch_version": torch.__version__,
        "train_seconds": round(train_seconds, 2), "train_config": {**vars(config), "p_clean": P_CLEAN},
        "counts": {"train": len(split.y_train), "heldout": len(split.y_held), "ood_fonts": len(ood.y)},
        "accuracy": {"heldout": held_acc, "ood_fonts": accuracy(ood_pred, ood.y)},
        "ood_fonts_accuracy_per_font": per_group_accuracy(ood_pred, ood.y, ood.font),
        "ood_fonts_accuracy_per_digit": per_group_accuracy(ood_pred, ood.y, [str(d) for d in ood.y]),
        "checks": checks, "thresholds": {"heldout": MIN_ACC},
    }
    write_json(out_dir / "index_to_name.json", {str(i): str(i) for i in range(10)})
    write_mnist_samples(out_dir / "samples", split.x_held, split.y_held, pred)
    np.savez_compressed(out_dir / "heldout.npz", x=split.x_held.astype(np.uint8), y=split.y_held, pred=pred)
    write_json(out_dir / "metrics.json", metrics)
    require(held_acc >= MIN_ACC, f"mnist held-out accuracy {held_acc:.4f} < {MIN_ACC}")
    return metrics


def per_group_accuracy(pred: np.ndarray, y: np.ndarray, groups: Sequence[str]) -> dict[str, float]:
    """Accuracy per group name (e.g. per font), in first-seen order."""
    names = np.asarray(groups)
    return {g: round(accuracy(pred[names == g], y[names == g]), 4) for g in dict.fromkeys(groups)}


def write_mnist_samples(samples_dir: Path, x: np.ndarray, y: np.ndarray, pred: np.ndarray) -> None:
    """Save ``<d>.png`` for d = 0..9: the first held-out image of digit d that the model gets right."""
    from PIL import Image

    samples_dir.mkdir(parents=True, exist_ok=True)
    expected = {}
    for d in range(10):
        hits = np.flatnonzero((y == d) & (pred == d))
        require(hits.size > 0, f"no correctly classified held-out sample of digit {d}")
        Image.fromarray(x[hits[0]].astype(np.uint8), mode="L").save(samples_dir / f"{d}.png")
        expected[f"{d}.png"] = d
    write_json(samples_dir / "expected.json", expected)
