"""The digit generator the digit models share: handwritten-looking digits from three sources, distorted the way
people write.

Sources: pen strokes (``strokes``: digit skeletons drawn by a random hand), printed digits (``fonts``: the fonts on
the machine) and scikit-learn's 8x8 handwritten digits (43 writers, upscaled). Every glyph is fitted into one
``GLYPH_SIDE`` square at one height (``digits.fit_glyph``), then distorted (``digits.distort``: slant, rotation,
width, elastic warp, stroke width, blur, contrast). The classifier puts each glyph into the MNIST layout (the
serving ``digit_box``); the scene generator pastes glyphs into canvases at any size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from examples.demo_models import strokes
from examples.demo_models.digits import (
    DigitSet,
    Distortion,
    distort,
    fit_glyph,
    to_mnist_layout,
    upscale_sklearn_digit,
)
from examples.demo_models.fonts import FontFace, render_font_glyph

SOURCES = ("strokes", "fonts", "sklearn")
# Pen strokes are already slanted, squeezed and warped by the hand that draws them: the raster adds a light
# elastic warp, blur and contrast only.
STROKE_DISTORTION = Distortion(rotate_deg=(-4.0, 4.0), elastic_px=2.2, blur_px=(0.0, 1.2), p_faint=0.1)
RASTER_DISTORTION = Distortion(rotate_deg=(-12.0, 12.0), shear=(-0.2, 0.5), aspect=(0.7, 1.2), elastic_px=2.2,
                               p_thicken=0.3, p_thin=0.25, blur_px=(0.0, 1.2), p_faint=0.1)
# A harder hand than training's, for held-out figures.
STRONG_DISTORTION = Distortion(rotate_deg=(-18.0, 18.0), shear=(-0.35, 0.65), aspect=(0.6, 1.3),
                               elastic_px=3.0, p_thicken=0.35, p_thin=0.3, blur_px=(0.0, 1.6), p_faint=0.2)
FONT_SIZE_PX = 48


@dataclass(frozen=True)
class GeneratorConfig:
    """Mix of the sources (weights of ``SOURCES``, normalised over the sources available), their distortions, and
    how often ``mnist_set`` draws each digit (``digit_weights``, digits 0..9, relative)."""

    weights: tuple[float, float, float] = (0.6, 0.15, 0.25)
    pen: strokes.PenStyle = strokes.TRAIN_PEN
    stroke_distortion: Distortion = STROKE_DISTORTION
    raster_distortion: Distortion = RASTER_DISTORTION
    font_stroke_px: tuple[int, int] = (0, 3)
    digit_weights: tuple[float, ...] = (1.0,) * 10


@dataclass
class DigitGenerator:
    """Random glyphs of given digits. ``sklearn_images`` ``(N, 8, 8)`` 0..16 and ``sklearn_labels`` ``(N,)``:
    the scikit-learn digits it may use (the training split only); ``fonts``: the faces it may use."""

    config: GeneratorConfig
    fonts: Sequence[FontFace] = ()
    sklearn_images: np.ndarray = field(default_factory=lambda: np.zeros((0, 8, 8)))
    sklearn_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __post_init__(self) -> None:
        self._fonts = [face.load(FONT_SIZE_PX) for face in self.fonts]
        available = np.array([True, bool(self._fonts), len(self.sklearn_labels) > 0])
        weights = np.asarray(self.config.weights, dtype=np.float64) * available
        if weights.sum() <= 0:
            raise ValueError("the digit generator has no source: give it a positive weight on strokes, or fonts "
                             "or scikit-learn digits with positive weights")
        self._p = weights / weights.sum()
        shares = np.asarray(self.config.digit_weights, dtype=np.float64)
        if shares.shape != (10,) or (shares < 0).any() or shares.sum() <= 0:
            raise ValueError(f"digit_weights must be 10 non-negative weights (digits 0..9) with a positive sum, got "
                             f"{self.config.digit_weights}")
        self._digit_p = shares / shares.sum()
        self._by_digit = {d: np.flatnonzero(np.asarray(self.sklearn_labels) == d) for d in range(10)}

    def glyph(self, digit: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """One distorted glyph of ``digit``: ``uint8 (GLYPH_SIDE, GLYPH_SIDE)`` white on black, and its source."""
        source = SOURCES[int(rng.choice(len(SOURCES), p=self._p))]
        if source == "sklearn" and self._by_digit[digit].size == 0:
            source = "strokes"
        if source == "strokes":
            return distort(strokes.render_stroke_digit(digit, rng, self.config.pen), rng,
                           self.config.stroke_distortion), source
        if source == "fonts":
            font = self._fonts[int(rng.integers(len(self._fonts)))]
            raw = render_font_glyph(digit, font, FONT_SIZE_PX, stroke=int(rng.integers(*self.config.font_stroke_px)))
        else:
            raw = upscale_sklearn_digit(self.sklearn_images[rng.choice(self._by_digit[digit])])
        return distort(fit_glyph(raw), rng, self.config.raster_distortion), source

    def mnist_set(self, n: int, rng: np.random.Generator) -> DigitSet:
        """``n`` glyphs in the MNIST layout, each digit ``floor(n * share)`` times (its share of ``digit_weights``;
        the rest drawn by share), shuffled; ``group`` is each image's source."""
        counts = np.floor(n * self._digit_p).astype(np.int64)
        rest = rng.choice(10, size=n - int(counts.sum()), p=self._digit_p)
        labels = rng.permutation(np.concatenate([np.repeat(np.arange(10), counts), rest]))
        images, sources = [], []
        for digit in labels:
            glyph, source = self.glyph(int(digit), rng)
            images.append(to_mnist_layout(glyph))
            sources.append(source)
        x = np.stack(images).astype(np.uint8) if images else np.zeros((0, 28, 28), dtype=np.uint8)
        return DigitSet(x, labels.astype(np.int64), sources)


# The generator a worker process of ``mnist_sets`` draws with (set once per worker by the pool's initializer).
_WORKER_GENERATOR: DigitGenerator | None = None


def _init_worker(generator: DigitGenerator) -> None:
    global _WORKER_GENERATOR
    _WORKER_GENERATOR = generator


def _worker_set(task: tuple[int, np.random.SeedSequence]) -> DigitSet:
    n, seed = task
    assert _WORKER_GENERATOR is not None, "mnist_sets' pool initializer did not run"
    return _WORKER_GENERATOR.mnist_set(n, np.random.default_rng(seed))


def mnist_sets(generator: DigitGenerator, n: int, count: int, seed: int, workers: int = 1) -> list[DigitSet]:
    """``count`` sets of ``n`` MNIST-layout digits, set ``i`` drawn from the ``i``-th child of ``seed``'s seed
    sequence, so the sets are the same whatever ``workers``; ``workers`` > 1 draws them in that many forked
    processes (the generator is inherited, not pickled)."""
    seeds = np.random.SeedSequence(seed).spawn(count)
    if workers <= 1:
        return [generator.mnist_set(n, np.random.default_rng(s)) for s in seeds]
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(workers, initializer=_init_worker, initargs=(generator,)) as pool:
        return pool.map(_worker_set, [(n, s) for s in seeds], chunksize=1)
