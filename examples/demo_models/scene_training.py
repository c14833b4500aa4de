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
from typing import TypeVar

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


# Both scene models train alike: epochs of fresh canvases drawn from a pool of training glyphs.
SCENE_TRAINING = DenseTrainConfig(epochs=12, canvases=2500, batch_size=32, lr=4e-3)
TRAIN_GLYPHS, HELD_GLYPHS, HELD_CANVASES = 12000, 2000, 300

SceneModel = TypeVar("SceneModel", bound=nn.Module)
Batch = tuple[torch.Tensor, ...]
# A model's batches of one epoch's canvases (``batch_size`` canvases each, shuffled by ``rng``), and its loss.
SceneBatches = Callable[[SceneSet, int, np.random.Generator], list[Batch]]
SceneLoss = Callable[[nn.Module, Batch], torch.Tensor]


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


def train_scene_model(make_model: Callable[[], SceneModel], batches: SceneBatches, loss: SceneLoss, seed: int,
                      log: Log) -> tuple[SceneModel, float, dict[str, SceneSet]]:
    """Train a new ``make_model()`` (seeded by ``seed``) on ``SCENE_TRAINING.canvases`` fresh ``TRAIN_SCENE``
    canvases per epoch from the training glyph pool, with ``loss(model, batch)`` on ``batches(canvases,
    batch_size, rng)``. Returns the model, its training seconds and the held-out canvases (``held_out_scenes``)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train_pool, held_pool = glyph_pools(seed, TRAIN_GLYPHS, HELD_GLYPHS, log)
    model = make_model()

    def epoch_batches(_epoch: int) -> list[Batch]:
        scenes = render_scenes(train_pool, TRAIN_SCENE, SCENE_TRAINING.canvases, rng)
        return batches(scenes, SCENE_TRAINING.batch_size, rng)

    log(f"training on {SCENE_TRAINING.epochs} x {SCENE_TRAINING.canvases} fresh canvases")
    seconds = train_dense(model, epoch_batches, loss, SCENE_TRAINING, log)
    return model, seconds, held_out_scenes(held_pool, HELD_CANVASES, seed + 1)


def train_dense(model: nn.Module, epoch_batches: Callable[[int], list[Batch]], loss: SceneLoss,
                config: DenseTrainConfig, log: Log) -> float:
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
