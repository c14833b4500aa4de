"""Digits in a scene: dark canvases holding a few handwritten digits from the digit generator, with their boxes
and a per-pixel class mask, for the detector and the segmenter.

Each digit is a glyph of ``handwriting.DigitGenerator`` (pen strokes, fonts, scikit-learn's digits; stroke
width, blur and contrast varied) drawn from a ``GlyphPool`` (glyphs are the costly part: a pool drawn once serves
many canvases, each glyph at other sizes, places and contrasts), its ink cropped and resized so its longer side is
``digit_px`` long, dimmed at random, pasted at a random place (lighter pixel wins where digits touch).
Coordinates are continuous pixels: pixel ``i`` spans ``[i, i + 1)``, so a box ``(x1, y1, x2, y2)`` covers columns
``x1 .. x2 - 1`` and rows ``y1 .. y2 - 1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from examples.demo_models.handwriting import DigitGenerator
from handlers.imaging import INK_FRACTION, resize

NUM_CLASSES = 10
# A pixel belongs to a digit's mask when it is at least this fraction of the digit's own peak (the stroke and
# the bright part of its anti-aliased edge).
MASK_FRACTION = 0.3
_PLACEMENT_TRIES = 30


@dataclass(frozen=True)
class SceneConfig:
    """Canvas ``width`` x ``height`` px; ``digits``: how many (inclusive range); ``digit_px``: longer side of a
    digit's box (inclusive range, px); ``max_overlap``: largest share of a digit's box another may cover;
    ``background``: dark background level range (0..255) and ``noise``: Gaussian noise std range, each drawn
    per canvas."""

    width: int = 128
    height: int = 128
    digits: tuple[int, int] = (1, 4)
    digit_px: tuple[int, int] = (20, 48)
    max_overlap: float = 0.15
    background: tuple[float, float] = (0.0, 30.0)
    noise: tuple[float, float] = (0.0, 8.0)
    p_faint: float = 0.3
    faint: tuple[float, float] = (0.4, 0.9)


@dataclass(frozen=True)
class GlyphPool:
    """Glyphs of the digit generator, drawn once: ``glyphs`` uint8 ``(N, S, S)`` and their ``labels`` ``(N,)``."""

    glyphs: np.ndarray
    labels: np.ndarray

    @classmethod
    def draw(cls, generator: DigitGenerator, n: int, rng: np.random.Generator) -> GlyphPool:
        """``n`` glyphs, the digits balanced (``i % 10``)."""
        labels = np.arange(n, dtype=np.int64) % NUM_CLASSES
        return cls(np.stack([generator.glyph(int(d), rng)[0] for d in labels]), labels)

    def pick(self, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        """A random glyph and its digit."""
        i = int(rng.integers(len(self.labels)))
        return self.glyphs[i], int(self.labels[i])


@dataclass(frozen=True)
class Scene:
    """One canvas: ``image`` uint8 ``(H, W)`` white ink on dark; ``boxes`` float32 ``(n, 4)`` ink boxes
    ``(x1, y1, x2, y2)`` in px; ``labels`` int64 ``(n,)`` digits; ``mask`` uint8 ``(H, W)``: 0 background,
    ``1 + digit`` on a digit's ink."""

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    mask: np.ndarray


@dataclass(frozen=True)
class SceneSet:
    """Canvases stacked: ``images`` uint8 ``(N, H, W)``, ``masks`` uint8 ``(N, H, W)``, and per canvas its
    ``boxes`` ``(n_i, 4)`` and ``labels`` ``(n_i,)``."""

    images: np.ndarray
    masks: np.ndarray
    boxes: list[np.ndarray]
    labels: list[np.ndarray]


def ink_crop(glyph: np.ndarray) -> np.ndarray:
    """The part of a white-on-black glyph inside its ink box (pixels above ``INK_FRACTION`` of the peak), float32."""
    pixels = np.asarray(glyph, dtype=np.float32)
    rows, cols = np.nonzero(pixels > INK_FRACTION * float(pixels.max()))
    return pixels[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def scaled_digit(glyph: np.ndarray, longer_px: int) -> np.ndarray:
    """The glyph's ink resized (aspect kept) so its longer side is ``longer_px``; float32 0..255."""
    crop = ink_crop(glyph)
    scale = longer_px / max(crop.shape)
    height, width = (max(1, round(n * scale)) for n in crop.shape)
    return resize(crop, width, height)


def _covered(box: np.ndarray, others: list[np.ndarray]) -> float:
    """Largest share of ``box``'s area or of any other's that their intersection covers (0 without others)."""
    worst = 0.0
    for other in others:
        iw = min(box[2], other[2]) - max(box[0], other[0])
        ih = min(box[3], other[3]) - max(box[1], other[1])
        if iw > 0 and ih > 0:
            smaller = min((box[2] - box[0]) * (box[3] - box[1]), (other[2] - other[0]) * (other[3] - other[1]))
            worst = max(worst, iw * ih / smaller)
    return worst


def _place(size: tuple[int, int], boxes: list[np.ndarray], config: SceneConfig,
           rng: np.random.Generator) -> tuple[int, int] | None:
    """Top-left (x, y) of a ``size`` = (width, height) patch inside the canvas, covering no placed box by more
    than ``max_overlap``; None when ``_PLACEMENT_TRIES`` draws all fail."""
    width, height = size
    for _ in range(_PLACEMENT_TRIES):
        x, y = int(rng.integers(0, config.width - width + 1)), int(rng.integers(0, config.height - height + 1))
        if _covered(np.array([x, y, x + width, y + height], dtype=np.float32), boxes) <= config.max_overlap:
            return x, y
    return None


def _background(config: SceneConfig, rng: np.random.Generator) -> np.ndarray:
    """A dark float32 canvas: a flat level plus Gaussian noise."""
    level = rng.uniform(*config.background)
    noise = rng.normal(0.0, rng.uniform(*config.noise), size=(config.height, config.width))
    return np.clip(level + noise, 0.0, 255.0).astype(np.float32)


def render_scene(pool: GlyphPool, config: SceneConfig, rng: np.random.Generator) -> Scene:
    """One canvas with ``config.digits`` random digits of ``pool`` (fewer when no place is left for one)."""
    canvas = _background(config, rng)
    mask = np.zeros((config.height, config.width), dtype=np.uint8)
    boxes: list[np.ndarray] = []
    labels: list[int] = []
    for _ in range(int(rng.integers(config.digits[0], config.digits[1] + 1))):
        glyph, digit = pool.pick(rng)
        patch = scaled_digit(glyph, int(rng.integers(config.digit_px[0], config.digit_px[1] + 1)))
        if rng.random() < config.p_faint:
            patch = patch * np.float32(rng.uniform(*config.faint))
        spot = _place((patch.shape[1], patch.shape[0]), boxes, config, rng)
        if spot is None:
            continue
        x, y = spot
        region = (slice(y, y + patch.shape[0]), slice(x, x + patch.shape[1]))
        mine = (patch >= MASK_FRACTION * patch.max()) & (patch >= canvas[region])
        mask[region][mine] = 1 + digit
        canvas[region] = np.maximum(canvas[region], patch)
        boxes.append(np.array([x, y, x + patch.shape[1], y + patch.shape[0]], dtype=np.float32))
        labels.append(digit)
    return Scene(np.rint(canvas).astype(np.uint8), np.array(boxes, dtype=np.float32).reshape(-1, 4),
                 np.array(labels, dtype=np.int64), mask)


def render_scenes(pool: GlyphPool, config: SceneConfig, n: int, rng: np.random.Generator) -> SceneSet:
    """``n`` canvases of ``render_scene``, stacked."""
    scenes = [render_scene(pool, config, rng) for _ in range(n)]
    shape = (0, config.height, config.width)
    return SceneSet(np.stack([s.image for s in scenes]) if scenes else np.zeros(shape, dtype=np.uint8),
                    np.stack([s.mask for s in scenes]) if scenes else np.zeros(shape, dtype=np.uint8),
                    [s.boxes for s in scenes], [s.labels for s in scenes])
