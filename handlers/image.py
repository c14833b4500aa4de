"""ImageClassifier: images in any common form -> class label, probabilities.

Accepted request bodies (one request may carry one image or a list of them):
- raw PNG/JPEG/GIF/BMP bytes (`curl -T 0.png`), or a base64 string of them;
- a NumPy `.npy` array (`Content-Type: application/x-npy`) of pixels;
- JSON `{"image" | "data" | "inputs": X}` or a bare JSON list, where X is one image as nested lists of pixel
  intensities 0..255 ((H, W) grayscale, (H, W, 3) colour), a list of such images, a base64 string, or a list of
  base64 strings.
Encoded images are converted to the configured channels, inverted to white-on-black when their background is
light, and fitted to the configured size; pixel arrays must already have that size.
Answer per image: `{"predicted_label": int, "label": str, "probabilities": [p0, ...]}` (or `"top_k"`).
"""

from __future__ import annotations

import io
import warnings
from functools import cached_property

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from handlers.base import Decoded, ServingHandler
from handlers.config import ImageInput
from handlers.decoding import (
    NPY_MAGIC,
    check_finite,
    decode_base64,
    is_image_bytes,
    load_npy,
    numeric_array,
    parse_json_text,
)
from handlers.errors import DecodeError, PayloadTooLarge, ValidationError

PAYLOAD_KEYS = ("image", "data", "inputs")
DIGIT_BOX_FRACTION = 20 / 28  # MNIST: the digit's bounding box fits 20x20 inside 28x28


def unwrap_payload(body: object, max_npy_bytes: int) -> object:
    """Request body -> image payload: bytes (encoded image), str (base64), list or ndarray (pixels)."""
    if body is None:
        raise DecodeError("empty request body")
    if isinstance(body, (bytes, bytearray)):
        body = bytes(body)
        if is_image_bytes(body):
            return body
        if body.startswith(NPY_MAGIC):
            return load_npy(body, max_npy_bytes)
        try:
            body = parse_json_text(body)
        except DecodeError as exc:
            raise DecodeError(f"body is neither an image (PNG, JPEG, GIF, BMP), a .npy array nor JSON: {exc}") from None
    elif isinstance(body, str) and body.lstrip()[:1] in ("{", "[", '"', ""):
        body = parse_json_text(body)
    if isinstance(body, dict):
        key = next((k for k in PAYLOAD_KEYS if k in body), None)
        if key is None:
            raise ValidationError(f"JSON object needs one of the keys {list(PAYLOAD_KEYS)}; got {sorted(body)}")
        return body[key]
    return body


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
    """Anti-aliased resize of a float32 (H, W) or (H, W, C) array to (height, width[, C])."""
    if pixels.ndim == 3:
        return np.stack([resize(pixels[..., c], width, height) for c in range(pixels.shape[2])], axis=-1)
    out = Image.fromarray(pixels, mode="F").resize((width, height), Image.Resampling.LANCZOS)
    return np.clip(np.asarray(out, dtype=np.float32), 0, 255)


def digit_box(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """MNIST layout of a (H, W) white-on-black image: ink cropped, fitted into the 20/28 box, centred by mass."""
    ink = pixels > 0.1 * pixels.max() if pixels.max() > 0 else np.zeros(pixels.shape, bool)
    if not ink.any():
        return resize(pixels, width, height)
    rows, cols = np.nonzero(ink)
    crop = pixels[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    scale = DIGIT_BOX_FRACTION * min(width, height) / max(crop.shape)
    h, w = (max(1, round(n * scale)) for n in crop.shape)
    glyph = resize(crop, w, h)
    total = glyph.sum() or 1.0
    cy = (glyph.sum(axis=1) * np.arange(h)).sum() / total
    cx = (glyph.sum(axis=0) * np.arange(w)).sum() / total
    top = int(np.clip(round((height - 1) / 2 - cy), 0, height - h))
    left = int(np.clip(round((width - 1) / 2 - cx), 0, width - w))
    canvas = np.zeros((height, width), dtype=np.float32)
    canvas[top : top + h, left : left + w] = glyph
    return canvas


def light_background(pixels: np.ndarray) -> bool:
    """Whether the border of an image is mostly bright (dark ink on a light background)."""
    border = np.concatenate([pixels[0].ravel(), pixels[-1].ravel(), pixels[:, 0].ravel(), pixels[:, -1].ravel()])
    return float(border.mean()) > 127.5


class ImageClassifier(ServingHandler):
    """Image classification with the contract of `handlers.base`; settings from `handler.image`."""

    @property
    def image(self) -> ImageInput:
        return self.settings.image or ImageInput()

    def example_input(self) -> torch.Tensor:
        s = self.image
        return self.to_tensor(np.zeros((1, s.height, s.width, s.channels), dtype=np.float32))

    def decode(self, body: object) -> Decoded:
        payload = unwrap_payload(body, max_npy_bytes=self.image.max_pixels * 8)
        images, many = self.pixel_images(payload)
        return Decoded(self.to_tensor(np.stack(images)), many=many)

    def pixel_images(self, payload: object) -> tuple[list[np.ndarray], bool]:
        """Payload -> white-on-black pixel arrays of the configured size, and whether a list was sent."""
        if isinstance(payload, bytes):
            return [self.from_encoded(payload)], False
        if isinstance(payload, str):
            return [self.from_encoded(decode_base64(payload))], False
        if isinstance(payload, list) and payload and all(isinstance(p, str) for p in payload):
            self.check_count(len(payload))
            return [self.from_encoded(decode_base64(p)) for p in payload], True
        if isinstance(payload, np.ndarray):
            return self.from_array(check_finite(payload, "image"))
        if isinstance(payload, list):
            return self.from_array(numeric_array(payload, "image"))
        raise ValidationError(
            f"image must be encoded bytes, base64 text or nested lists of pixels, got {type(payload).__name__}"
        )

    def from_encoded(self, data: bytes) -> np.ndarray:
        """An encoded image -> (H, W[, 3]) white-on-black pixels fitted to the configured size."""
        s = self.image
        pixels = self.orient(image_pixels(open_image(data, s.max_pixels), s.channels))
        if pixels.shape[:2] == (s.height, s.width):
            return pixels
        if s.channels == 1 and s.fit == "digit_box":
            return digit_box(pixels, s.width, s.height)
        return resize(pixels, s.width, s.height)

    def from_array(self, array: np.ndarray) -> tuple[list[np.ndarray], bool]:
        """Pixel array of one image (H, W[, 3]) or of n images (n, H, W[, 3]) -> list of images."""
        s = self.image
        one = (s.height, s.width) if s.channels == 1 else (s.height, s.width, 3)
        if array.shape == one:
            images, many = [array], False
        elif array.ndim == len(one) + 1 and array.shape[1:] == one and len(array):
            self.check_count(len(array))
            images, many = list(array), True
        else:
            raise ValidationError(f"image array has shape {list(array.shape)}; expected {list(one)} "
                                  f"for one image or [n, {', '.join(map(str, one))}] for n images")
        low, high = float(array.min()), float(array.max())
        if low < 0 or high > 255:
            raise ValidationError(f"pixel values must be within [0, 255]; got min {low:g}, max {high:g}")
        return [self.orient(image) for image in images], many

    def orient(self, pixels: np.ndarray) -> np.ndarray:
        """White ink on black, as the model was trained: invert light-background images."""
        background = self.image.background
        if background == "light" or (background == "auto" and light_background(pixels)):
            return 255.0 - pixels
        return pixels

    def to_tensor(self, pixels: np.ndarray) -> torch.Tensor:
        """(n, H, W[, C]) intensities 0..255 -> normalised (n, C, H, W) float32."""
        s = self.image
        batch = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))
        batch = batch.reshape(len(pixels), s.height, s.width, s.channels).permute(0, 3, 1, 2) / 255.0
        mean, std = self.normalisation
        return ((batch - mean) / std).contiguous()

    @cached_property
    def normalisation(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Configured mean and std as (1, C, 1, 1) tensors, built once per worker rather than per request."""
        s = self.image
        shape = (1, -1, 1, 1)
        return torch.tensor(s.mean).view(shape), torch.tensor(s.std).view(shape)

    def encode(self, outputs: torch.Tensor, item: Decoded) -> object:
        probabilities = torch.softmax(outputs, dim=1)
        answers = [self.answer(row) for row in probabilities]
        return answers if item.many else answers[0]

    def answer(self, probabilities: torch.Tensor) -> dict:
        """One image's answer from its (classes,) probabilities."""
        index = int(probabilities.argmax())
        answer: dict = {"predicted_label": index, "label": self.label(index)}
        if self.settings.top_k:
            values, indices = probabilities.topk(min(self.settings.top_k, len(probabilities)))
            answer["top_k"] = [
                {"index": int(i), "label": self.label(int(i)), "probability": round(float(v), 6)}
                for v, i in zip(values, indices, strict=True)
            ]
        else:
            answer["probabilities"] = [round(float(p), 6) for p in probabilities]
        return answer

    def label(self, index: int) -> str:
        return self.labels[index] if self.labels and index < len(self.labels) else str(index)
