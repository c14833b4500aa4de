"""The mnist demo model: ``MnistConvNet`` (MnistCNN's serving cost) trained on digits of the digit generator (pen
strokes, the machine's fonts, the training split of sklearn's 8x8 digits; distorted the way people write) in the
MNIST layout the serving handler builds. Figures on digits it never trains on: the stratified 20 % held-out split
of sklearn's digits (threshold ``MIN_ACC``), pen strokes of another seed, a harder hand, other fonts
(``heldout_sets``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from examples.demo_models import digits, fonts, handwriting, strokes
from examples.demo_models.digits import DigitSet
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
from toolkit.export.architectures import MnistConvNet
from toolkit.export.torchscript import predict

MIN_ACC = 0.97
EPOCHS = 20
IMAGES_PER_EPOCH = 12000
BATCH_SIZE = 128
# Processes drawing the training digits before training starts (the machine's 2 cores).
GENERATOR_WORKERS = 2
HELDOUT_GENERATED = 2000
# Digits with more ways to write them (2: with or without a loop at the base; 6: curved or straight stem; 9: loop
# open or closed, stem from its side or its top) are drawn this many times as often as the others.
MANY_SHAPED_DIGITS, MANY_SHAPED_WEIGHT = (2, 6, 9), 1.6
LABEL_SMOOTHING = 0.1
ARCH = "mnist_convnet"


@dataclass
class SklearnDigits:
    """scikit-learn's digits split once (stratified, ``HELDOUT_FRACTION`` held out, fixed seed): ``raw`` the
    8x8 images (0..16), ``rendered`` the same split in the MNIST layout (uint8 (N, 28, 28), as served)."""

    raw: Split
    rendered: Split


def mnist_split(seed: int, log: Callable[[str], None]) -> SklearnDigits:
    """sklearn's digits, raw and rendered in the MNIST layout, split alike (same labels and seed)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    log(f"rendering {len(data.images)} sklearn digits in the MNIST layout")
    rendered = digits.render_sklearn_digits(data.images)
    return SklearnDigits(stratified_split(data.images, data.target, seed),
                         stratified_split(rendered, data.target, seed))


def digit_generator(train: Split) -> handwriting.DigitGenerator:
    """The training generator: pen strokes by a free hand (``strokes.FREE_PEN``), the machine's fonts and the
    training split of sklearn's digits, the ``MANY_SHAPED_DIGITS`` drawn ``MANY_SHAPED_WEIGHT`` times as often."""
    shares = tuple(MANY_SHAPED_WEIGHT if d in MANY_SHAPED_DIGITS else 1.0 for d in range(10))
    config = handwriting.GeneratorConfig(pen=strokes.FREE_PEN, digit_weights=shares)
    return handwriting.DigitGenerator(config, fonts.system_fonts(), train.x_train, train.y_train)


def train_mnist(raw: Split, seed: int, log: Callable[[str], None]) -> tuple[MnistConvNet, float, TrainConfig]:
    """Train ``MnistConvNet`` on ``IMAGES_PER_EPOCH`` new digits of the generator every epoch (``raw``: the
    sklearn split whose training part the generator may use). Returns the model, the seconds spent drawing the
    digits and training, and the optimiser settings."""
    start = time.perf_counter()
    config = TrainConfig(epochs=EPOCHS, batch_size=BATCH_SIZE, lr=3e-3, weight_decay=1e-4,
                         label_smoothing=LABEL_SMOOTHING)
    log(f"drawing {config.epochs} x {IMAGES_PER_EPOCH} digits in {GENERATOR_WORKERS} processes")
    sets = handwriting.mnist_sets(digit_generator(raw), IMAGES_PER_EPOCH, config.epochs, seed, GENERATOR_WORKERS)
    log(f"drawn in {time.perf_counter() - start:.1f}s; training")

    def epoch_data(epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(digits.normalize(sets[epoch].x)), torch.from_numpy(sets[epoch].y)

    torch.manual_seed(seed)
    model = MnistConvNet()
    fit(model, epoch_data, config, log)
    return model, time.perf_counter() - start, config


def build(out_dir: Path, seed: int, log: Callable[[str], None]) -> dict:
    """Build the mnist model directory; returns its metrics; raises ``BuildError``."""
    sklearn_digits = mnist_split(seed, log)
    split = sklearn_digits.rendered
    model, train_seconds, config = train_mnist(sklearn_digits.raw, seed, log)
    x_held = torch.from_numpy(digits.normalize(split.x_held))
    scripted, checks = export_and_check(model, x_held, out_dir, "mnist", log)
    pred = predict(scripted, x_held).argmax(1).numpy().astype(np.int64)
    held_acc = accuracy(pred, split.y_held)
    log("rendering the held-out generated digits (other seeds, harder hands, other fonts)")
    other = heldout_sets(sklearn_digits.raw, seed)
    other_pred = {name: predict(scripted, torch.from_numpy(digits.normalize(s.x))).argmax(1).numpy()
                  for name, s in other.items()}
    metrics = {
        "model": "mnist", "arch": ARCH, "seed": seed, "torch_version": torch.__version__,
        "train_seconds": round(train_seconds, 2),
        "train_config": {**vars(config), "images_per_epoch": IMAGES_PER_EPOCH},
        "counts": {"train": config.epochs * IMAGES_PER_EPOCH, "heldout": len(split.y_held),
                   **{name: len(s.y) for name, s in other.items()}},
        "accuracy": {"heldout": held_acc,
                     **{name: accuracy(other_pred[name], s.y) for name, s in other.items()}},
        "accuracy_per_digit": {"heldout": per_digit_accuracy(pred, split.y_held),
                               **{name: per_digit_accuracy(other_pred[name], s.y) for name, s in other.items()}},
        "fonts_accuracy_per_font": per_group_accuracy(other_pred["fonts"], other["fonts"].y, other["fonts"].group),
        "checks": checks, "thresholds": {"heldout": MIN_ACC},
    }
    write_json(out_dir / "index_to_name.json", {str(i): str(i) for i in range(10)})
    write_mnist_samples(out_dir / "samples", split.x_held, split.y_held, pred)
    np.savez_compressed(out_dir / "heldout.npz", x=split.x_held.astype(np.uint8), y=split.y_held, pred=pred)
    write_json(out_dir / "metrics.json", metrics)
    require(held_acc >= MIN_ACC, f"mnist held-out accuracy {held_acc:.4f} < {MIN_ACC}")
    return metrics


def heldout_sets(raw: Split, seed: int) -> dict[str, DigitSet]:
    """Digits the model never trains on, in the MNIST layout: ``strokes`` (pen strokes of the training hand,
    another seed), ``strokes_strong`` (a harder hand: more jitter, slant, warp, stroke width change), ``fonts``
    (matplotlib's fonts, plain), ``fonts_distorted`` and ``sklearn_distorted`` (those fonts and the held-out split
    of sklearn's digits through the harder distortions)."""
    rng = np.random.default_rng([seed, 1])
    plain = handwriting.GeneratorConfig(weights=(1.0, 0.0, 0.0), pen=strokes.FREE_PEN)
    strong = handwriting.GeneratorConfig(weights=(1.0, 0.0, 0.0), pen=strokes.STRONG_PEN,
                                         stroke_distortion=handwriting.STRONG_DISTORTION)
    harder = handwriting.GeneratorConfig(weights=(0.0, 1.0, 1.0), raster_distortion=handwriting.STRONG_DISTORTION)
    held_fonts = fonts.matplotlib_fonts()
    return {
        "strokes": handwriting.DigitGenerator(plain).mnist_set(HELDOUT_GENERATED, rng),
        "strokes_strong": handwriting.DigitGenerator(strong).mnist_set(HELDOUT_GENERATED, rng),
        "fonts": fonts.build_font_digit_set(held_fonts),
        "fonts_distorted": handwriting.DigitGenerator(harder, held_fonts).mnist_set(HELDOUT_GENERATED // 2, rng),
        "sklearn_distorted": handwriting.DigitGenerator(replace(harder, weights=(0.0, 0.0, 1.0)), (), raw.x_held,
                                                        raw.y_held).mnist_set(HELDOUT_GENERATED // 2, rng),
    }


def per_digit_accuracy(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy per true digit ``"0"`` .. ``"9"``."""
    return {str(d): round(accuracy(pred[y == d], y[y == d]), 4) for d in range(10) if (y == d).any()}


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
