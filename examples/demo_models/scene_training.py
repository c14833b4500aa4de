"""What the scene models (``digit_detector``, ``digit_segmenter``) share: their input, their glyph pools, the
training loop over fresh canvases, and the held-out canvases.

Training glyphs come from the digit generator with pen strokes, the machine's fonts and the training split of
scikit-learn's digits; held-out glyphs from sources the models never see: pen strokes of another seed,
matplotlib's fonts and the held-out split of scikit-learn's digits, through the same distortions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from examples.demo_models import fonts, handwriting
from examples.demo_models.scenes import GlyphPool, SceneConfig, SceneSet, render_scenes
from examples.demo_models.training import Log, Split, stratified_split
from handlers.config import ImageInput
from handlers.imaging import resize, to_tensor

# The preprocessing the scene models are trained with: grayscale canvases, white ink on a dark background,
# stretched to 128x128, MNIST's mean and std.
SCENE_INPUT = ImageInput(width=128, height=128, channels=1, mean=[0.1307], std=[0.3081], background="dark",
                         fit="stretch")
# Training canvases are denser than the example's 1 to 4 digits: more digits to learn from per canvas computed.
TRAIN_SCENE = SceneConfig(digits=(2, 6))
# Held-out canvases of another size (stretched to the model's size by the serving resize), digits scaled alike.
OTHER_SIZE = SceneConfig(width=192, height=160, digit_px=(28, 64))
# Held-out glyphs: the training hand and distortions, other sources.
HELD_OUT_GENERATOR = handwriting.GeneratorConfig(weights=(0.4, 0.3, 0.3))


@dataclass(frozen=True)
class DenseTrainConfig:
    """AdamW with a one-cycle schedule over ``epochs`` of ``canvases`` fresh canvases each."""

    epochs: int
    canvases: int
    batch_size: int
    lr: float
    weight_decay: float = 1e-4


def sklearn_split(seed: int) -> Split:
    """scikit-learn's 8x8 digits split as the mnist model splits them (same seed and fraction)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    return stratified_split(data.images, data.target, seed)


def glyph_pools(seed: int, train_glyphs: int, held_glyphs: int, log: Log) -> tuple[GlyphPool, GlyphPool]:
    """(training pool, held-out pool): see the module docstring for their sources."""
    split = sklearn_split(seed)
    rng = np.random.default_rng(seed)
    log(f"drawing {train_glyphs} training and {held_glyphs} held-out glyphs")
    train = handwriting.DigitGenerator(handwriting.GeneratorConfig(), fonts.system_fonts(), split.x_train,
                                       split.y_train)
    held = handwriting.DigitGenerator(HELD_OUT_GENERATOR, fonts.matplotlib_fonts(), split.x_held, split.y_held)
    return GlyphPool.draw(train, train_glyphs, rng), GlyphPool.draw(held, held_glyphs, np.random.default_rng([seed, 1]))


def to_input(images: np.ndarray) -> torch.Tensor:
    """uint8 canvases ``(N, H, W)`` at the model's size -> the model input ``(N, 1, H, W)`` (``SCENE_INPUT``)."""
    return to_tensor(np.asarray(images), SCENE_INPUT)


def stretched(images: np.ndarray) -> np.ndarray:
    """Canvases of any size stretched to the model's size by the serving resize (float32 0..255)."""
    return np.stack([resize(np.asarray(img, dtype=np.float32), SCENE_INPUT.width, SCENE_INPUT.height)
                     for img in images])


def held_out_scenes(pool: GlyphPool, n: int, seed: int) -> dict[str, SceneSet]:
    """Held-out canvases at the model's size (``model_size``) and at ``OTHER_SIZE`` (``other_size``)."""
    rng = np.random.default_rng(seed)
    return {"model_size": render_scenes(pool, SceneConfig(), n, rng),
            "other_size": render_scenes(pool, OTHER_SIZE, n, rng)}


def train_dense(model: nn.Module, epoch_batches: Callable[[int], list[tuple[torch.Tensor, ...]]],
                loss: Callable[[nn.Module, tuple[torch.Tensor, ...]], torch.Tensor], config: DenseTrainConfig,
                log: Log) -> float:
    """Train ``model`` in place on ``epoch_batches(epoch)`` (a list of batches) with ``loss(model, batch)``;
    returns the training wall time in seconds."""
    start = time.perf_counter()
    steps_per_epoch = -(-config.canvases // config.batch_size)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=config.lr,
                                                   total_steps=config.epochs * steps_per_epoch)
    for epoch in range(config.epochs):
        model.train()
        batches = epoch_batches(epoch)
        total = 0.0
        for batch in batches[:steps_per_epoch]:
            value = loss(model, batch)
            optimiser.zero_grad()
            value.backward()
            optimiser.step()
            schedule.step()
            total += value.detach().item()
        log(f"epoch {epoch + 1:2d}/{config.epochs}  loss={total / max(1, len(batches)):.4f}  "
            f"({time.perf_counter() - start:.1f}s)")
    model.eval()
    return time.perf_counter() - start
