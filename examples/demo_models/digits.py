"""Digit images in the MNIST layout: rendering of sklearn's 8×8 digits, augmentation, normalisation.

MNIST layout: 28×28 ``uint8``, white ink (255) on black (0); the digit is scaled (aspect ratio kept,
anti-aliased) so its ink bounding box fits a 20×20 box, then translated so its centre of mass is at
the centre of pixel (14, 14), i.e. (14.5, 14.5) in continuous pixel coordinates (pixel ``i`` spans ``[i, i + 1)``),
where MNIST's own digits have it.
The layout and the normalisation are the image handler's own (``handlers.imaging.digit_box`` and
``to_tensor``) with ``MNIST_INPUT``, the ``handler.image`` section the mnist YAMLs serve the model with (a unit
test holds them equal), so the model trains on exactly what serving feeds it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from handlers.config import ImageInput
from handlers.imaging import INK_FRACTION, digit_box, resize, to_tensor

MNIST_SIZE = 28
# The preprocessing the model is trained with: MNIST's layout and normalisation (mean and std of MNIST's pixels).
MNIST_INPUT = ImageInput(width=MNIST_SIZE, height=MNIST_SIZE, channels=1, mean=[0.1307], std=[0.3081],
                         background="auto", fit="digit_box")

# Intermediate resolution sklearn's 8×8 digits are upscaled to (their original bitmaps were 32×32).
_UPSCALE = 32
# Contrast window applied after upscaling, as fractions of 255: below LOW -> 0, above HIGH -> 255.
# It turns the blurry block averages into strokes with a solid core and soft (anti-aliased) edges.
_LOW, _HIGH = 0.22, 0.62
# Side of the square image every source's glyph is fitted into before the distortions, and the digit's height in
# it, in px (the MNIST layout then shrinks the digit to 20 px).
GLYPH_SIDE = 64
GLYPH_HEIGHT_PX = 34.0


@dataclass(frozen=True)
class DigitSet:
    """Labelled digit images: ``x`` uint8 ``(N, 28, 28)`` (MNIST layout), ``y`` int64 ``(N,)``, ``group`` a name
    per image (its source, font, ...)."""

    x: np.ndarray
    y: np.ndarray
    group: list[str]


def upscale_sklearn_digit(img8: np.ndarray) -> np.ndarray:
    """Upscale one sklearn digit (8×8, values 0..16, white ink) to a 32×32 ``uint8`` stroke image.

    Bicubic interpolation on the float image, then a linear contrast window (``_LOW``..``_HIGH``).
    """
    arr = np.asarray(img8, dtype=np.float32)
    if arr.shape != (8, 8):
        raise ValueError(f"expected an 8x8 digit, got shape {arr.shape}")
    big = Image.fromarray(arr / 16.0, mode="F").resize((_UPSCALE, _UPSCALE), Image.Resampling.BICUBIC)
    v = (np.asarray(big, dtype=np.float32) - _LOW) / (_HIGH - _LOW)
    return np.rint(np.clip(v, 0.0, 1.0) * 255.0).astype(np.uint8)


def to_mnist_layout(gray: np.ndarray) -> np.ndarray:
    """Put a white-on-black ``uint8`` image of one digit (any size) into the 28×28 MNIST layout, ``uint8``.

    The serving handler's ``digit_box`` (ink cropped, longer side resized to 20 px, centre of mass at
    (14.5, 14.5)), rounded to ``uint8``. An all-black image gives an all-black 28×28 image.
    """
    pixels = digit_box(np.asarray(gray, dtype=np.float32), MNIST_SIZE, MNIST_SIZE)
    return np.rint(pixels).astype(np.uint8)


def render_sklearn_digits(images: np.ndarray) -> np.ndarray:
    """Render sklearn digits ``(N, 8, 8)`` (0..16) as MNIST-layout images ``(N, 28, 28)`` uint8."""
    return np.stack([to_mnist_layout(upscale_sklearn_digit(img)) for img in images]).astype(np.uint8)


def normalize(images: np.ndarray) -> np.ndarray:
    """Serving preprocessing: uint8 ``(N, 28, 28)`` -> float32 ``(N, 1, 28, 28)``, normalised by the image
    handler's own ``to_tensor`` with ``MNIST_INPUT`` (MNIST's mean and std)."""
    return to_tensor(np.asarray(images), MNIST_INPUT).numpy()


def fit_glyph(gray: np.ndarray, side: int = GLYPH_SIDE, height_px: float = GLYPH_HEIGHT_PX) -> np.ndarray:
    """Crop the ink of a white-on-black ``uint8`` digit image (any size) and centre it in a ``side``-square
    ``uint8`` image, scaled so the digit is ``height_px`` tall (less when it is wider than tall), so the glyphs
    of every source meet the distortions at one scale. An image without ink gives a black image."""
    pixels = np.asarray(gray, dtype=np.float32)
    peak = float(pixels.max())
    out = np.zeros((side, side), dtype=np.float32)
    if peak <= 0:
        return out.astype(np.uint8)
    rows, cols = np.nonzero(pixels > INK_FRACTION * peak)
    crop = pixels[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    scale = min(height_px / crop.shape[0], 0.9 * side / crop.shape[1])
    h, w = (max(1, round(n * scale)) for n in crop.shape)
    top, left = (side - h) // 2, (side - w) // 2
    out[top : top + h, left : left + w] = resize(crop, w, h)
    return np.rint(out).astype(np.uint8)


@dataclass(frozen=True)
class Distortion:
    """Ranges of the raster distortions ``distort`` draws from, in px of a ``GLYPH_SIDE`` glyph whose digit is
    ``GLYPH_HEIGHT_PX`` tall (the MNIST layout shrinks it to 20 px: multiply by ~0.6 for MNIST pixels).

    ``rotate_deg``, ``shear`` (horizontal, positive leans the top right) and ``aspect`` (width scale): one affine
    map about the centre; ``elastic_px``: amplitude of a smooth random displacement (a 4x4 grid of normal draws,
    bicubically upsampled); ``p_thicken``/``p_thin``: chance of a 3x3 max (min) filter on the strokes;
    ``blur_px``: Gaussian blur sigma; ``p_faint``: chance the ink's peak is scaled by ``faint`` (contrast).
    """

    rotate_deg: tuple[float, float] = (0.0, 0.0)
    shear: tuple[float, float] = (0.0, 0.0)
    aspect: tuple[float, float] = (1.0, 1.0)
    elastic_px: float = 0.0
    p_thicken: float = 0.0
    p_thin: float = 0.0
    blur_px: tuple[float, float] = (0.0, 0.0)
    p_faint: float = 0.0
    faint: tuple[float, float] = (0.45, 0.9)


def distort(glyph: np.ndarray, rng: np.random.Generator, distortion: Distortion) -> np.ndarray:
    """One random draw of ``distortion`` applied to a ``uint8`` square glyph; same shape, ``uint8``.

    Order: stroke width (max/min filter), affine + elastic (one bilinear remap), blur, contrast. Deterministic
    for a given ``rng`` state.
    """
    from scipy.ndimage import gaussian_filter

    image = _stroke_width(Image.fromarray(np.asarray(glyph, dtype=np.uint8)), rng, distortion)
    pixels = _remap(np.asarray(image, dtype=np.float32), rng, distortion)
    sigma = rng.uniform(*distortion.blur_px)
    if sigma > 0.05:
        pixels = gaussian_filter(pixels, sigma)
    if rng.random() < distortion.p_faint:
        pixels = pixels * rng.uniform(*distortion.faint)
    return np.rint(np.clip(pixels, 0, 255)).astype(np.uint8)


def _stroke_width(image: Image.Image, rng: np.random.Generator, distortion: Distortion) -> Image.Image:
    """Thicken (3x3 max filter) or thin (3x3 min filter, only when enough ink survives) the strokes, or not."""
    draw = rng.random()
    if draw < distortion.p_thicken:
        return image.filter(ImageFilter.MaxFilter(3))
    if draw < distortion.p_thicken + distortion.p_thin:
        thinner = image.filter(ImageFilter.MinFilter(3))
        if np.count_nonzero(np.asarray(thinner) > 127) >= 0.5 * np.count_nonzero(np.asarray(image) > 127):
            return thinner
    return image


def _remap(pixels: np.ndarray, rng: np.random.Generator, distortion: Distortion) -> np.ndarray:
    """Bilinear remap of a square image by a random affine map about its centre plus an elastic field."""
    from scipy.ndimage import map_coordinates

    side = pixels.shape[0]
    angle = np.deg2rad(rng.uniform(*distortion.rotate_deg))
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    # forward map on (x, y) about the centre: squeeze, shear, rotate; sampling needs its inverse
    forward = rot @ np.array([[1.0, -rng.uniform(*distortion.shear)], [0.0, 1.0]]) @ np.diag(
        [rng.uniform(*distortion.aspect), 1.0])
    inverse = np.linalg.inv(forward)
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float64) - (side - 1) / 2
    src_x = inverse[0, 0] * xs + inverse[0, 1] * ys + (side - 1) / 2
    src_y = inverse[1, 0] * xs + inverse[1, 1] * ys + (side - 1) / 2
    if distortion.elastic_px > 0:
        src_x = src_x + _smooth_field(side, rng) * distortion.elastic_px
        src_y = src_y + _smooth_field(side, rng) * distortion.elastic_px
    return map_coordinates(pixels, [src_y, src_x], order=1, mode="constant", cval=0.0).astype(np.float32)


def _smooth_field(side: int, rng: np.random.Generator, grid: int = 4) -> np.ndarray:
    """A smooth random field ``(side, side)`` of unit scale: a ``grid``x``grid`` of normal draws, bicubic."""
    coarse = Image.fromarray(rng.standard_normal((grid, grid)).astype(np.float32), mode="F")
    return np.asarray(coarse.resize((side, side), Image.Resampling.BICUBIC), dtype=np.float64)
