"""Printed digits from the fonts on the machine: one source of the digit generator, and a held-out set.

Training fonts (``system_fonts``): Pillow's scalable default font (``ImageFont.load_default(size=...)``, needs
FreeType) and the DejaVu TrueType files under ``/usr/share/fonts``. Held-out fonts (``matplotlib_fonts``): the
STIX and Computer Modern faces matplotlib ships (serif, italic, bold, sans, typewriter): shapes the model never
trains on, for the figures in ``metrics.json``.
"""

from __future__ import annotations

import importlib.util
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from examples.demo_models.digits import DigitSet, to_mnist_layout

DEFAULT_FONT_DIR = Path("/usr/share/fonts")
# matplotlib's faces with lining digits (cmmi10's are old-style; the others carry no digits).
HELD_OUT_FACES = ("STIXGeneral", "STIXGeneralItalic", "STIXGeneralBol", "STIXGeneralBolIta",
                  "cmr10", "cmb10", "cmss10", "cmtt10", "cmti10")
SIZES: tuple[int, ...] = (24, 48)
SLANTS: tuple[float, ...] = (-0.2, 0.0, 0.25)
# Stroke width as a fraction of the font size (0 = the font's own weight).
THICKNESS: tuple[float, ...] = (0.0, 0.06)
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@dataclass(frozen=True)
class FontFace:
    """A font on the machine: ``path`` to a TrueType file, or None for Pillow's scalable default font."""

    name: str
    path: Path | None = None

    def load(self, size_px: int) -> Font:
        """The face at ``size_px``."""
        if self.path is None:
            return ImageFont.load_default(size=size_px)
        return ImageFont.truetype(str(self.path), size_px)


def system_fonts(font_dir: Path = DEFAULT_FONT_DIR) -> list[FontFace]:
    """Pillow's scalable default font (when Pillow has FreeType) and every DejaVu*.ttf under ``font_dir``."""
    faces = [FontFace("pillow-default")] if _scalable_default_available() else []
    if font_dir.is_dir():
        faces += [FontFace(path.stem, path) for path in sorted(font_dir.rglob("DejaVu*.ttf"))]
    return faces


def matplotlib_fonts() -> list[FontFace]:
    """The ``HELD_OUT_FACES`` matplotlib ships (none when matplotlib is not installed)."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or spec.origin is None:
        return []
    font_dir = Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf"
    return [FontFace(name, font_dir / f"{name}.ttf") for name in HELD_OUT_FACES
            if (font_dir / f"{name}.ttf").is_file()]


def _scalable_default_available() -> bool:
    """Whether ``load_default(size=...)`` gives a scalable FreeType font (Pillow built with FreeType)."""
    return isinstance(ImageFont.load_default(size=20), ImageFont.FreeTypeFont)


def render_font_glyph(digit: int, font: Font, size: int, slant: float = 0.0, stroke: int = 0) -> np.ndarray:
    """``digit`` white on black in ``font`` (``size`` px, which sets the canvas: 3x3 sizes), sheared by
    ``slant`` (positive leans the top right, italic), ``stroke`` px of extra stroke width; ``uint8`` image."""
    side = 3 * size
    img = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(img)
    draw.text((side / 2, side / 2), str(digit), fill=255, font=font, anchor="mm",
              stroke_width=stroke, stroke_fill=255)
    if slant:
        # Inverse map: input x = x + slant * (y - centre).
        coeffs = (1.0, slant, -slant * side / 2, 0.0, 1.0, 0.0)
        img = img.transform(img.size, Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.uint8)


def render_font_digit(digit: int, font: Font, size: int, slant: float = 0.0, stroke: int = 0) -> np.ndarray:
    """``render_font_glyph`` put into the MNIST layout (28x28 ``uint8``)."""
    return to_mnist_layout(render_font_glyph(digit, font, size, slant, stroke))


def build_font_digit_set(faces: Sequence[FontFace], sizes: Sequence[int] = SIZES,
                         slants: Sequence[float] = SLANTS,
                         thickness: Sequence[float] = THICKNESS) -> DigitSet:
    """Render digits 0-9 for every face x size x slant x thickness combination (fixed order); ``group`` is
    each image's face."""
    images: list[np.ndarray] = []
    labels: list[int] = []
    names: list[str] = []
    for face, size in itertools.product(faces, sizes):
        font = face.load(size)
        for slant, thick, digit in itertools.product(slants, thickness, range(10)):
            images.append(render_font_digit(digit, font, size, slant, round(thick * size)))
            labels.append(digit)
            names.append(face.name)
    if not images:
        empty = np.zeros((0, 28, 28), dtype=np.uint8)
        return DigitSet(empty, np.zeros(0, dtype=np.int64), [])
    return DigitSet(np.stack(images).astype(np.uint8), np.asarray(labels, dtype=np.int64), names)
