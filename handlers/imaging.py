"""Pixel operations of the image handler, written once for serving and for training the demo models.

Pixels are float32 intensities 0..255, (H, W) grayscale or (H, W, 3) colour. The MNIST layout (`digit_box`) and
the normalisation (`to_tensor`) are imported by `examples/demo_models` too, so a model is trained on exactly
the inputs this handler builds from a request.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from handlers.config import ImageInput
from handlers.errors import DecodeError, PayloadTooLarge

DIGIT_BOX_FRACTION = 20 / 28  # MNIST: the digit's bounding box fits 20x20 inside 28x28
INK_FRACTION = 0.1  # pixels above this fraction of the brightest pixel count as ink when cropping a digit


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Decode an encoded image, refusing one that declares more than `max_pixels` before decoding it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise PayloadTooLarge(f"image refused before decoding: {exc}") from None
    except (UnidentifiedImageError, OSError):
        raise DecodeError("body is not a decodable image (PNG, JPEG, GIF or BMP expected)") from None
    width, height = image.size
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"image declares {width}x{height} = {width * height} pixels; at most {max_pixels} allowed"
        )
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise DecodeError(f"truncated or corrupt image: {exc}") from None
    return image


def image_pixels(image: Image.Image, channels: int) -> np.ndarray:
    """(H, W) or (H, W, 3) float32 intensities 0..255; transparency is composited over white."""
    if "A" in image.getbands() or "transparency" in image.info:
        image = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", image.size, (255, 255, 255, 255)), image)
    return np.asarray(image.convert("L" if channels == 1 else "RGB"), dtype=np.float32)


def resize(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """Anti-aliased (Lanczos) resize of a float32 (H, W) or (H, W, C) array to (height, width[, C]), in 0..255."""
    if pixels.ndim == 3:
        return np.stack([resize(pixels[..., c], width, height) for c in range(pixels.shape[2])], axis=-1)
    out = Image.fromarray(np.asarray(pixels, dtype=np.float32), mode="F").resize((width, height),
                                                                                 Image.Resampling.LANCZOS)
    return np.clip(np.asarray(out, dtype=np.float32), 0, 255)


def centre_of_mass(pixels: np.ndarray) -> tuple[float, float]:
    """Intensity-weighted (row, col) centre of a (H, W) image in continuous pixel coordinates (pixel i spans
    [i, i + 1), so the centre of a 28x28 image is (14, 14)); the image centre when the image is black."""
    weights = np.asarray(pixels, dtype=np.float64)
    total = weights.sum()
    if total <= 0:
        return weights.shape[0] / 2, weights.shape[1] / 2
    rows = np.arange(weights.shape[0]) + 0.5
    cols = np.arange(weights.shape[1]) + 0.5
    return float(weights.sum(axis=1) @ rows / total), float(weights.sum(axis=0) @ cols / total)


def digit_box(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """MNIST layout of a (H, W) white-on-black image, as float32 (height, width) intensities 0..255.

    The ink (pixels above INK_FRACTION of the brightest) is cropped, resized with its aspect ratio kept so its
    longer side fills the 20/28 box, and pasted so its centre of mass lands on the image centre, kept fully
    inside the frame. An image without ink is plainly resized.
    """
    peak = float(pixels.max())
    if peak <= 0:
        return resize(pixels, width, height)
    rows, cols = np.nonzero(pixels > INK_FRACTION * peak)
    crop = pixels[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    scale = DIGIT_BOX_FRACTION * min(width, height) / max(crop.shape)
    h, w = (max(1, round(n * scale)) for n in crop.shape)
    glyph = resize(crop, w, h)
    cy, cx = centre_of_mass(glyph)
    top = int(np.clip(round(height / 2 - cy), 0, height - h))
    left = int(np.clip(round(width / 2 - cx), 0, width - w))
    canvas = np.zeros((height, width), dtype=np.float32)
    canvas[top : top + h, left : left + w] = glyph
    return canvas


def light_background(pixels: np.ndarray) -> bool:
    """Whether the border of an image is mostly bright (dark ink on a light background)."""
    border = np.concatenate([pixels[0].ravel(), pixels[-1].ravel(), pixels[:, 0].ravel(), pixels[:, -1].ravel()])
    return float(border.mean()) > 127.5


def normalisation(image: ImageInput) -> tuple[np.ndarray, np.ndarray]:
    """The configured mean and std as float32 arrays of shape (C,) (values for intensities scaled to 0..1)."""
    return np.asarray(image.mean, dtype=np.float32), np.asarray(image.std, dtype=np.float32)


def to_tensor(pixels: np.ndarray | Sequence[np.ndarray], image: ImageInput,
              mean_std: tuple[np.ndarray, np.ndarray] | None = None) -> torch.Tensor:
    """(n, H, W[, C]) intensities 0..255, or a list of n (H, W[, C]) images (stacked here, in the float32
    conversion) -> the model input: (n, C, H, W) float32, (x / 255 - mean) / std.

    `mean_std` is `normalisation(image)`, passed in by a worker that built it once. Computed in NumPy on the
    (n, H, W, C) layout, then one copy into (n, C, H, W): a 28x28 image takes ~4 µs against ~10 µs as torch ops.
    """
    batch = np.asarray(pixels, dtype=np.float32).reshape(len(pixels), image.height, image.width, image.channels)
    mean, std = mean_std or normalisation(image)
    scaled = (batch / np.float32(255.0) - mean) / std
    return torch.from_numpy(np.ascontiguousarray(scaled.transpose(0, 3, 1, 2)))
