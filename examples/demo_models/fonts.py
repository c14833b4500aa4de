"""Out-of-distribution digit set: digits 0-9 rendered from fonts, then put into the MNIST layout.

Only fonts present on a clean machine are used: Pillow's scalable default font
(``ImageFont.load_default(size=...)``, needs FreeType) and DejaVu TrueType files found under
``/usr/share/fonts`` (if any). Variants: font size (px), horizontal slant (shear factor) and stroke
thickness (Pillow ``stroke_width`` in px).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from examples.demo_models.digits import to_mnist_layout

FontLoader = Callable[[int], ImageFont.FreeTypeFont | ImageFont.ImageFont]

DEFAULT_FONT_DIR = Path("/usr/share/fonts")
SIZES: tuple[int, ...] = (24, 48)
SLANTS: tuple[float, ...] = (-0.2, 0.0, 0.25)
# Stroke width as a fraction of the font size (0 = the font's own weight).
THICKNESS: tuple[float, ...] = (0.0, 0.06)


@dataclass(frozen=True)
class FontDigitSet:
    """Rendered set: ``x`` uint8 ``(N, 28, 28)``, ``y`` int64 ``(N,)``, ``font`` name per image."""

    x: np.ndarray
    y: np.ndarray
    font: list[str]


def font_sources(font_dir: Path = DEFAULT_FONT_DIR) -> list[tuple[str, FontLoader]]:
    """(name, loader(size_px)) for Pillow's scalable default font and every DejaVu*.ttf found."""
    sources: list[tuple[str, FontLoader]] = []
    if _scalable_default_available():
        sources.append(("pillow-default", lambda size: ImageFont.load_default(size=size)))
    if font_dir.is_dir():
        for path in sorted(font_dir.rglob("DejaVu*.ttf")):
            sources.append((path.stem, lambda size, p=path: ImageFont.truetype(str(p), size)))
    return sources


def _scalable_default_available() -> bool:
    """Whether ``load_default(size=...)`` gives a scalable FreeType font (Pillow built with FreeType)."""
    return isinstance(ImageFont.load_default(size=20), ImageFont.FreeTypeFont)


def render_font_digit(digit: int, font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
                      size: int, slant: float = 0.0, stroke: int = 0) -> np.ndarray:
    """Render ``digit`` white on black with ``font``, shear by ``slant``, return the MNIST layout.

    ``size`` is the font size in px (sets the canvas size); ``stroke`` the extra stroke width in px.
    """
    side = 3 * size
    img = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(img)
    draw.text((side / 2, side / 2), str(digit), fill=255, font=font, anchor="mm",
              stroke_width=stroke, stroke_fill=255)
    if slant:
        # Inverse map: input x = x + slant * (y - centre); slant > 0 leans the top right (italic).
        coeffs = (1.0, slant, -slant * side / 2, 0.0, 1.0, 0.0)
        img = img.transform(img.size, Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BICUBIC)
    return to_mnist_layout(np.asarray(img))


def build_font_digit_set(sources: Sequence[tuple[str, FontLoader]], sizes: Sequence[int] = SIZES,
                         slants: Sequence[float] = SLANTS,
                         thickness: Sequence[float] = THICKNESS) -> FontDigitSet:
    """Render digits 0-9 for every font × size × slant × thickness combination (fixed order)."""
    images: list[np.ndarray] = []
    labels: list[int] = []
    names: list[str] = []
    for (name, loader), size in itertools.product(sources, sizes):
        font = loader(size)
        for slant, thick, digit in itertools.product(slants, thickness, range(10)):
            images.append(render_font_digit(digit, font, size, slant, round(thick * size)))
            labels.append(digit)
            names.append(name)
    if not images:
        empty = np.zeros((0, 28, 28), dtype=np.uint8)
        return FontDigitSet(empty, np.zeros(0, dtype=np.int64), [])
    return FontDigitSet(np.stack(images).astype(np.uint8), np.asarray(labels, dtype=np.int64), names)
