"""ImageClassifier: images in any common form -> class label, probabilities.

Accepted request bodies (one request may carry one image or a list of them):
- raw PNG/JPEG/GIF/BMP bytes (`curl -T 0.png`), or a base64 string of them;
- a NumPy `.npy` array (`Content-Type: application/x-npy`) of pixels;
- JSON `{"image" | "data" | "inputs": X}` or a bare JSON list, where X is one image as nested lists of pixel
  intensities 0..255 ((H, W) grayscale, (H, W, 3) colour), a list of such images, a base64 string, or a list of
  base64 strings.
Every image, encoded or pixels, of any size, takes one path (`handlers.imaging`): converted to the configured
channels (encoded ones turned upright by their EXIF orientation), inverted when `handler.image.background` says
so, and fitted to the configured size as `handler.image.fit` says; `DecodedImages` carries each image's
`Placement` (where it landed in the model input).
Answer per image: `{"predicted_label": int, "label": str, "probabilities": [p0, ...]}` (or `"top_k"`), the
`ImageAnswer` of `handlers.answers`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from handlers import imaging
from handlers.answers import ImageAnswer
from handlers.base import Decoded, ServingHandler
from handlers.classification import check_class_scores, class_probabilities, ranked_answer
from handlers.config import ImageInput
from handlers.decoding import check_finite, decode_base64, numeric_array, read_body
from handlers.errors import ClientError, PayloadTooLarge, ValidationError
from handlers.imaging import Fitted, Placement, image_pixels, light_background, open_image, whole_intensities
from handlers.oip import OPEN_INFERENCE, OipRequest, class_scores
from handlers.oip_tensors import OipError, finite_float32, single_input
from handlers.outputs import ModelOutputs

PAYLOAD_KEYS = ("image", "data", "inputs")


def unwrap_payload(body: object, max_npy_bytes: int) -> object:
    """Request body -> image payload: bytes (encoded image), str (base64), list or ndarray (pixels)."""
    body = read_body(body, images=True, max_npy_bytes=max_npy_bytes)
    if isinstance(body, dict):
        key = next((k for k in PAYLOAD_KEYS if k in body), None)
        if key is None:
            raise ValidationError(f"JSON object needs one of the keys {list(PAYLOAD_KEYS)}; got {sorted(body)}")
        return body[key]
    return body


@dataclass(frozen=True)
class DecodedImages(Decoded):
    """An image request after decode: `inputs` (n, C, H, W) and each image's `Placement`, in item order (where
    the fit put it in the model input: a detector maps its boxes back to the request image with it)."""

    placements: tuple[Placement, ...] = ()


class ImageClassifier(ServingHandler):
    """Image classification with the contract of `handlers.base`; settings from `handler.image`. Also speaks the
    Open Inference Protocol (`handlers.oip`): one FP32 or UINT8 tensor of n images."""

    protocols = (OPEN_INFERENCE,)
    section = "image"
    oip_outputs = ("probabilities", "predicted_label")

    @property
    def image(self) -> ImageInput:
        return self.settings.image

    def check_outputs(self, outputs: ModelOutputs) -> None:
        check_class_scores(outputs, self.labels)

    def example_input(self) -> torch.Tensor:
        s = self.image
        return self.to_tensor(np.zeros((1, s.height, s.width, s.channels), dtype=np.float32))

    def decode(self, body: object) -> DecodedImages:
        payload = unwrap_payload(body, max_npy_bytes=self.image.max_pixels * 8)
        images, many = self.source_images(payload)
        return self.decoded(images, many)

    def decode_oip(self, request: OipRequest) -> DecodedImages:
        """The request's one input tensor (FP32 or UINT8) of intensities 0..255 (as the JSON form), shape
        [n, H, W] or [n, 1, H, W] for grayscale, [n, H, W, 3] or [n, 3, H, W] for colour, any H and W (fitted
        as the REST forms are) -> DecodedImages (a list)."""
        s = self.image
        tensor = single_input(request, ("FP32", "UINT8"))
        array = finite_float32(tensor)
        if array.ndim == 4 and array.shape[1] == s.channels and (s.channels == 1 or array.shape[3] != 3):
            array = array[:, 0] if s.channels == 1 else array.transpose(0, 2, 3, 1)
        if array.ndim != (3 if s.channels == 1 else 4) or (s.channels == 3 and array.shape[-1] != 3):
            forms = "[n, H, W] or [n, 1, H, W]" if s.channels == 1 else "[n, H, W, 3] or [n, 3, H, W]"
            raise OipError(f"input '{tensor.name}': shape {list(tensor.array.shape)} is not an image batch; "
                           f"expected {forms} with n >= 1 (any H and W: fitted to {s.width}x{s.height})")
        try:
            images, _ = self.from_array(array, batch=True)
        except ClientError as error:
            raise OipError(f"input '{tensor.name}': {error.message}", error.status, error.phrase) from None
        return self.decoded(images, many=True)

    def decoded(self, images: Sequence[np.ndarray], many: bool) -> DecodedImages:
        """Source images (H, W[, C]) of any size -> DecodedImages: each fitted, the model input, placements."""
        fitted = [self.fit(pixels) for pixels in images]
        return DecodedImages(self.to_tensor([f.pixels for f in fitted]), many=many,
                             placements=tuple(f.placement for f in fitted))

    def fit(self, pixels: np.ndarray) -> Fitted:
        """One source image -> the model's size (`handlers.imaging.fit`), inverted when the background is light
        (`handler.image.background`: always, never, or judged per image from its border)."""
        background = self.image.background
        invert = background == "light" or (background == "auto" and light_background(pixels))
        return imaging.fit(pixels, self.image, invert)

    def source_images(self, payload: object) -> tuple[list[np.ndarray], bool]:
        """Payload -> source images (H, W[, 3]) 0..255 of any size, and whether a list was sent."""
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
        """An encoded image -> (H, W[, 3]) uint8 pixels in the configured channels, upright."""
        return image_pixels(open_image(data, self.image.max_pixels), self.image.channels)

    def from_array(self, array: np.ndarray, batch: bool | None = None) -> tuple[list[np.ndarray], bool]:
        """Pixels of one image ((H, W) grayscale, (H, W, 3) colour) or of n images ((n, H, W[, 3])), any H and
        W -> the list of images (whole numbers as uint8, the path of decoded images) and whether n were sent.
        `batch`: the array is n images (OIP); None: told by its number of axes."""
        s = self.image
        one_ndim = 2 if s.channels == 1 else 3
        many = array.ndim == one_ndim + 1 if batch is None else batch
        if array.ndim != one_ndim + many or (s.channels == 3 and array.shape[-1] != 3) or not array.size:
            one = "H, W" if s.channels == 1 else "H, W, 3"
            raise ValidationError(f"image array has shape {list(array.shape)}; expected [{one}] for one image or "
                                  f"[n, {one}] for n images (any H and W: fitted to {s.width}x{s.height})")
        height, width = array.shape[many:many + 2]
        if height * width > s.max_pixels:
            raise PayloadTooLarge(f"image array of {width}x{height} = {width * height} pixels; at most "
                                  f"{s.max_pixels} allowed")
        low, high = float(array.min()), float(array.max())
        if low < 0 or high > 255:
            raise ValidationError(f"pixel values must be within [0, 255]; got min {low:g}, max {high:g}")
        if many:
            self.check_count(len(array))
        pixels = whole_intensities(array)
        return (list(pixels) if many else [pixels]), many

    def to_tensor(self, pixels: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
        """(n, H, W[, C]) intensities 0..255, or n (H, W[, C]) images -> normalised (n, C, H, W) float32
        (`handlers.imaging.to_tensor`)."""
        return imaging.to_tensor(pixels, self.image, self.normalisation)

    @cached_property
    def normalisation(self) -> tuple[np.ndarray, np.ndarray]:
        """Configured mean and std as (C,) float32 arrays, built once per worker rather than per request."""
        return imaging.normalisation(self.image)

    def encode(self, outputs: ModelOutputs, item: Decoded) -> ImageAnswer | list[ImageAnswer]:
        """(n, classes) scores of one request's n images -> one answer, or a list of n when a list was sent."""
        probabilities = class_probabilities(outputs).tolist()  # one conversion per request, not one per value
        answers = [self.answer(row) for row in probabilities]
        return answers if item.many else answers[0]

    def encode_oip(self, outputs: ModelOutputs, item: Decoded) -> dict[str, np.ndarray]:
        return class_scores(outputs.main)

    def answer(self, probabilities: list[float]) -> ImageAnswer:
        """One image's answer from its probabilities, one per class in index order (`ranked_answer`)."""
        return ranked_answer(probabilities, self.labels, self.settings.top_k)
