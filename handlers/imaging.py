"""Pixel operations of the image handler, written once for serving and for training the demo models.

Pixels are intensities 0..255, (H, W) grayscale or (H, W, 3) colour: uint8 as decoded (encoded images, and
pixel arrays of whole numbers), float32 otherwise. An image of another size than the model's is fitted to it
(`fit`) as `handler.image.fit` says, with torchvision's semantics on PIL images (bilinear, antialiased resampling
by PIL itself, so uint8 images come out bit-exact to `torchvision.transforms`), and the fit is recorded as the
image's `Placement`: a detector maps its boxes back to the request image with it. The MNIST layout
(`digit_box`) and the normalisation (`to_tensor`) are imported by `examples/demo_models` too, so a model is
trained on exactly the inputs this handler builds from a request.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from handlers.config import ImageInput
from handlers.errors import DecodeError, PayloadTooLarge

DIGIT_BOX_FRACTION = 20 / 28  # MNIST: the digit's bounding box fits 20x20 inside 28x28
INK_FRACTION = 0.1  # pixels above this fraction of the brightest pixel count as ink when cropping a digit
# Where MNIST puts a digit's centre of mass: on the centre of pixel (height // 2, width // 2), (14.5, 14.5) in the
# continuous coordinates of 28x28 (its normalisation counted pixel indices). Training digits laid out half a pixel
# off would not look like MNIST's own images, which a worker serves as they are (28x28 skips the layout).
MASS_CENTRE_OFFSET_PX = 0.5


@dataclass(frozen=True)
class Placement:
    """Where one request image landed in the model input: the fit as an affine map per axis.

    Coordinates are continuous pixels (pixel i spans [i, i + 1)), x to the right, y down. A point (x, y) of the
    request image (after its EXIF orientation) lands at (x * scale_x + offset_x, y * scale_y + offset_y) in the
    model input. `offset_*` is negative where the fit cropped (center_crop) and positive where it padded
    (letterbox). `crop` is the part of the request image that the model sees, (left, top, right, bottom) in
    request-image pixels: the whole image unless the fit cut some off.
    """

    source_width: int
    source_height: int
    scale_x: float
    scale_y: float
    offset_x: float
    offset_y: float
    crop: tuple[float, float, float, float]

    @classmethod
    def of(cls, width: int, height: int, scale_x: float = 1.0, scale_y: float = 1.0, offset_x: float = 0.0,
           offset_y: float = 0.0, model_size: tuple[int, int] | None = None) -> Placement:
        """The placement of a `width` x `height` image resized by `scale_*` and moved by `offset_*` into a model
        input of `model_size` (width, height): `crop` is the request-image part inside it."""
        model_w, model_h = model_size or (width * scale_x + offset_x, height * scale_y + offset_y)
        crop = (max(0.0, -offset_x / scale_x), max(0.0, -offset_y / scale_y),
                min(float(width), (model_w - offset_x) / scale_x), min(float(height), (model_h - offset_y) / scale_y))
        return cls(width, height, scale_x, scale_y, offset_x, offset_y, crop)

    def to_source(self, boxes: object) -> np.ndarray:
        """Boxes (n, 4) as (x1, y1, x2, y2) in model-input pixels -> the same boxes in request-image pixels,
        float64, clipped to `crop` (a box reaching into letterbox padding ends at the image's edge)."""
        out = np.array(boxes, dtype=np.float64).reshape(-1, 4)
        out[:, 0::2] = np.clip((out[:, 0::2] - self.offset_x) / self.scale_x, self.crop[0], self.crop[2])
        out[:, 1::2] = np.clip((out[:, 1::2] - self.offset_y) / self.scale_y, self.crop[1], self.crop[3])
        return out

    def to_model(self, boxes: object) -> np.ndarray:
        """The inverse of `to_source` (without clipping): request-image boxes (n, 4) -> model-input pixels."""
        out = np.array(boxes, dtype=np.float64).reshape(-1, 4)
        out[:, 0::2] = out[:, 0::2] * self.scale_x + self.offset_x
        out[:, 1::2] = out[:, 1::2] * self.scale_y + self.offset_y
        return out


@dataclass(frozen=True)
class Fitted:
    """One image fitted to the model's size: `pixels` (height, width[, C]) 0..255 and how it got there."""

    pixels: np.ndarray
    placement: Placement


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Decode an encoded image, refusing one that declares more than `max_pixels` before decoding it; turned
    upright by its EXIF orientation (a phone's JPEG), as a viewer shows it."""
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
    if "exif" in image.info:  # JPEG, PNG eXIf, WebP: reading the tags costs ~25 µs, so only when there are some
        ImageOps.exif_transpose(image, in_place=True)
    return image


def image_pixels(image: Image.Image, channels: int) -> np.ndarray:
    """(H, W) or (H, W, 3) uint8 intensities; transparency is composited over white."""
    if "A" in image.getbands() or "transparency" in image.info:
        image = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", image.size, (255, 255, 255, 255)), image)
    return np.asarray(image.convert("L" if channels == 1 else "RGB"))


def whole_intensities(pixels: np.ndarray) -> np.ndarray:
    """Pixel values 0..255 as uint8 when they are all whole numbers (they then take exactly the path of a decoded
    image), else as they are."""
    if pixels.dtype == np.uint8 or not np.array_equal(pixels, np.rint(pixels)):
        return pixels
    return pixels.astype(np.uint8)


def resize(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """Anti-aliased (Lanczos) resize of a float32 (H, W) or (H, W, C) array to (height, width[, C]), in 0..255
    (the MNIST layout's resampling)."""
    if pixels.ndim == 3:
        return np.stack([resize(pixels[..., c], width, height) for c in range(pixels.shape[2])], axis=-1)
    out = Image.fromarray(np.asarray(pixels, dtype=np.float32), mode="F").resize((width, height),
                                                                                 Image.Resampling.LANCZOS)
    return np.clip(np.asarray(out, dtype=np.float32), 0, 255)


def resample(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear, antialiased resize to (height, width[, C]): PIL's `Image.resize(BILINEAR)`, which is what
    torchvision's `Resize` runs on a PIL image. uint8 pixels go through PIL's 8-bit path (bit-exact to
    torchvision's); float pixels channel by channel in PIL's float mode. The same size comes back unchanged."""
    if pixels.shape[:2] == (height, width):
        return pixels
    if pixels.dtype == np.uint8:
        return np.asarray(Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR))
    if pixels.ndim == 3:
        return np.stack([resample(pixels[..., c], width, height) for c in range(pixels.shape[2])], axis=-1)
    out = Image.fromarray(np.asarray(pixels, dtype=np.float32)).resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(out, dtype=np.float32)


def shorter_side_size(width: int, height: int, shorter: int) -> tuple[int, int]:
    """(width, height) after resizing the shorter side to `shorter`, aspect kept: torchvision's `Resize(n)`
    size rule, the longer side truncated, `int(n * long / short)`."""
    if width <= height:
        return shorter, int(shorter * height / width)
    return int(shorter * width / height), shorter


def centre_crop_offsets(width: int, height: int, crop_width: int, crop_height: int) -> tuple[int, int]:
    """(left, top) of torchvision's `CenterCrop`: `int(round((size - crop) / 2))`, Python's round (half to even)."""
    return int(round((width - crop_width) / 2.0)), int(round((height - crop_height) / 2.0))


def stretch(pixels: np.ndarray, width: int, height: int) -> Fitted:
    """Resized to width x height, aspect ratio not kept (torchvision's `Resize((height, width))`)."""
    h, w = pixels.shape[:2]
    return Fitted(resample(pixels, width, height), Placement.of(w, h, width / w, height / h))


def centre_crop(pixels: np.ndarray, width: int, height: int, shorter: int) -> Fitted:
    """Shorter side resized to `shorter` (aspect kept), then the centre width x height cut out: torchvision's
    `Resize(shorter)` + `CenterCrop((height, width))`. Needs shorter >= max(width, height) (the schema's rule)."""
    h, w = pixels.shape[:2]
    new_w, new_h = shorter_side_size(w, h, shorter)
    left, top = centre_crop_offsets(new_w, new_h, width, height)
    resized = resample(pixels, new_w, new_h)
    placement = Placement.of(w, h, new_w / w, new_h / h, -left, -top, (width, height))
    return Fitted(resized[top : top + height, left : left + width], placement)


def letterbox(pixels: np.ndarray, width: int, height: int, pad_value: float = 0.0) -> Fitted:
    """Resized to fit inside width x height with its aspect ratio kept, centred, the rest `pad_value`."""
    h, w = pixels.shape[:2]
    scale = min(width / w, height / h)
    new_w, new_h = min(width, max(1, round(w * scale))), min(height, max(1, round(h * scale)))
    left, top = (width - new_w) // 2, (height - new_h) // 2
    content = resample(pixels, new_w, new_h)
    if (new_w, new_h) == (width, height):
        canvas = content
    else:
        canvas = np.full((height, width, *pixels.shape[2:]), pad_value, dtype=np.float32)
        canvas[top : top + new_h, left : left + new_w] = content
    return Fitted(canvas, Placement.of(w, h, new_w / w, new_h / h, left, top, (width, height)))


def fit(pixels: np.ndarray, image: ImageInput, invert: bool = False) -> Fitted:
    """One image (H, W[, C]) 0..255 -> the model's (height, width[, C]) as `image.fit` says, and its placement.

    `invert` turns dark ink on light into light on dark (255 - x): before the MNIST layout (which looks for the
    ink), after the resampling otherwise (bilinear resampling commutes with it); letterbox padding is
    `pad_value` either way. An image of the model's size is used as it is, except by center_crop, which
    resizes and crops every image as torchvision does.
    """
    h, w = pixels.shape[:2]
    if image.fit == "digit_box":
        source = (255 - pixels if invert else pixels).astype(np.float32)
        if (h, w) == (image.height, image.width):
            return Fitted(source, Placement.of(w, h))
        return digit_box_fitted(source, image.width, image.height)
    if image.fit == "letterbox":  # the content inverted, not the padding
        return letterbox(_inverted(pixels) if invert else pixels, image.width, image.height, image.pad_value or 0.0)
    if image.fit == "center_crop":
        fitted = centre_crop(pixels, image.width, image.height, image.resize)
    else:
        fitted = stretch(pixels, image.width, image.height)
    return replace(fitted, pixels=_inverted(fitted.pixels)) if invert else fitted


def _inverted(pixels: np.ndarray) -> np.ndarray:
    return 255 - pixels if pixels.dtype == np.uint8 else np.float32(255) - pixels


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
    longer side fills the 20/28 box, and pasted so its centre of mass lands on the centre of the middle pixel
    (MNIST's place: (14.5, 14.5) in a 28x28 image, `MASS_CENTRE_OFFSET_PX`), kept fully inside the frame. An image
    without ink is plainly resized.
    """
    return digit_box_fitted(pixels, width, height).pixels


def digit_box_fitted(pixels: np.ndarray, width: int, height: int) -> Fitted:
    """`digit_box` and its placement (the ink's box is the part of the request image the model sees)."""
    h, w = pixels.shape[:2]
    peak = float(pixels.max())
    if peak <= 0:
        return Fitted(resize(pixels, width, height), Placement.of(w, h, width / w, height / h))
    rows, cols = np.nonzero(pixels > INK_FRACTION * peak)
    crop = pixels[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    scale = DIGIT_BOX_FRACTION * min(width, height) / max(crop.shape)
    gh, gw = (max(1, round(n * scale)) for n in crop.shape)
    glyph = resize(crop, gw, gh)
    cy, cx = centre_of_mass(glyph)
    top = int(np.clip(round(height // 2 + MASS_CENTRE_OFFSET_PX - cy), 0, height - gh))
    left = int(np.clip(round(width // 2 + MASS_CENTRE_OFFSET_PX - cx), 0, width - gw))
    canvas = np.zeros((height, width), dtype=np.float32)
    canvas[top : top + gh, left : left + gw] = glyph
    sx, sy = gw / crop.shape[1], gh / crop.shape[0]
    placement = Placement(w, h, sx, sy, left - cols.min() * sx, top - rows.min() * sy,
                          (float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1)))
    return Fitted(canvas, placement)


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
