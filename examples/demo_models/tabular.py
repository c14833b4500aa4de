"""The tabular demo model: ``TabularMLP`` on sklearn's breast-cancer data, stratified 20 % held-out split."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

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
from toolkit.export.architectures import TabularMLP
from toolkit.export.torchscript import predict

MIN_ACC = 0.93


def train_tabular(split: Split, seed: int, log: Callable[[str], None]) -> tuple[TabularMLP, float, TrainConfig]:
    """Train ``TabularMLP`` with mean/std buffers from the training features."""
    torch.manual_seed(seed)
    x = torch.from_numpy(split.x_train.astype(np.float32))
    y = torch.from_numpy(split.y_train)
    std = x.std(dim=0, unbiased=False).clamp_min(1e-6)
    model = TabularMLP(mean=x.mean(dim=0), std=std)
    config = TrainConfig(epochs=40, batch_size=64, lr=3e-3, weight_decay=1e-2, log_every=10)
    log(f"training on {len(y)} rows, {config.epochs} epochs")
    seconds = fit(model, lambda _epoch: (x, y), config, log)
    return model, seconds, config


def build(out_dir: Path, seed: int, log: Callable[[str], None]) -> dict:
    """Build the tabular model directory; returns its metrics; raises ``BuildError``."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    split = stratified_split(data.data.astype(np.float64), data.target, seed)
    model, train_seconds, config = train_tabular(split, seed, log)
    x_held = torch.from_numpy(split.x_held.astype(np.float32))
    scripted, checks = export_and_check(model, x_held, out_dir, "tabular", log)
    pred = predict(scripted, x_held).argmax(1).numpy().astype(np.int64)
    held_acc = accuracy(pred, split.y_held)
    metrics = {
        "model": "tabular", "arch": "tabular_mlp", "seed": seed, "torch_version": torch.__version__,
        "train_seconds": round(train_seconds, 2), "train_config": vars(config),
        "counts": {"train": len(split.y_train), "heldout": len(split.y_held)},
        "accuracy": {"heldout": held_acc},
        "checks": checks, "thresholds": {"heldout": MIN_ACC},
    }
    names = [str(n) for n in data.target_names]
    write_json(out_dir / "index_to_name.json", {str(i): n for i, n in enumerate(names)})
    write_tabular_samples(out_dir / "samples", split.x_held, split.y_held, pred)
    np.savez_compressed(out_dir / "heldout.npz", x=split.x_held, y=split.y_held, pred=pred)
    write_json(out_dir / "metrics.json", metrics)
    require(held_acc >= MIN_ACC, f"tabular held-out accuracy {held_acc:.4f} < {MIN_ACC}")
    return metrics


def write_tabular_samples(samples_dir: Path, x: np.ndarray, y: np.ndarray, pred: np.ndarray) -> None:
    """Save ``sample_0..3.json`` (``{"inputs": [[30 floats]]}``): two correctly classified rows per class."""
    samples_dir.mkdir(parents=True, exist_ok=True)
    chosen: list[int] = []
    for label in (0, 1):
        hits = np.flatnonzero((y == label) & (pred == label))[:2]
        require(hits.size == 2, f"fewer than 2 correctly classified held-out rows of class {label}")
        chosen.extend(int(i) for i in hits)
    expected = {}
    for k, i in enumerate(chosen):
        write_json(samples_dir / f"sample_{k}.json", {"inputs": [x[i].astype(float).tolist()]})
        expected[f"sample_{k}.json"] = [int(y[i])]
    write_json(samples_dir / "expected.json", expected)
