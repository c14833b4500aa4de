"""ImageSegmenter: images -> a class per pixel, at the request image's own size, as a compact PNG.

Requests are those of the image classifier (`handlers.image`: encoded images, base64, pixel arrays, a list of
them, OIP), through the same photo pipeline; settings from `handler.image` and the optional
`handler.segmentation`. The model returns class scores (logits) `(N, C, h, w)` over the model input (`h`, `w`
may be smaller than the input: the grid is taken to cover it), as a tensor or in a dict (`handler.output`
names it, e.g. torchvision's `out`).

The class map of each image is computed at the request image's size (`class_map`): every request pixel's centre
is mapped into the model input through the image's `Placement` (undoing stretch, letterbox or crop), the logits
are sampled there bilinearly (clamped at the border: pixels a centre crop cut off take the nearest pixel the
model saw), and the class is their argmax. Upsampling the logits rather than the class map gives smooth class
boundaries on images larger than the model input.

Answer per image (`handlers.answers.SegmentationAnswer`): `{"width", "height", "mask": base64 PNG, "classes":
[{"index", "label", "fraction"}, ...]}` (+ `background_fraction`), never the logits. The PNG is 8-bit with a
palette: its pixel values are the class indices (read back with Pillow, `np.asarray(Image.open(...))`), and
image viewers show each class in its own colour (the background black). A request with `Accept: image/png`
gets the PNG itself (`image/png`; one image per request). The Open Inference Protocol answers `class_map` UINT8
[n, H, W].
"""

from __future__ import annotations

import base64
import colorsys
import io
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from handlers.answers import ClassShare, SegmentationAnswer
from handlers.base import Decoded, ServingHandler
from handlers.classification import class_label
from handlers.config import SegmentationSettings
from handlers.decoding import request_body
from handlers.errors import ClientError, ModelConfigError
from handlers.image import DecodedImages, ImageClassifier
from handlers.imaging import Placement
from handlers.oip import OPEN_INFERENCE
from handlers.outputs import ModelOutputs
from handlers.protocols import Protocol, Reply, RequestInfo

PNG_CONTENT_TYPE = "image/png"
MAX_CLASSES = 256  # class indices are 8-bit PNG pixels
BAND_PIXELS = 1 << 18  # request pixels sampled per step: bounds the sampled logits' memory (C x 1 MiB floats)
FRACTION_DECIMALS = 6
GOLDEN_RATIO = 0.618033988749895  # hue step between consecutive classes' colours


class NotAcceptable(ClientError):
    """The answer the request accepts cannot be given (e.g. one PNG for a list of images)."""

    status = 406
    error_type = "not_acceptable"
    phrase = "Not Acceptable"


def class_map(logits: torch.Tensor, placement: Placement, model_width: int, model_height: int) -> np.ndarray:
    """(C, h, w) class scores over a `model_width` x `model_height` model input -> the (H, W) uint8 class map
    at the request image's size (`placement.source_*`), as the module docstring says."""
    _, h, w = logits.shape
    width, height = placement.source_width, placement.source_height
    if (width, height) == (w, h) == (model_width, model_height) and placement == Placement.of(width, height):
        return logits.argmax(0).numpy().astype(np.uint8)
    # Normalised grid coordinates (-1..1 across the model input, align_corners=False) of each pixel centre.
    gx = torch.from_numpy(((np.arange(width) + 0.5) * placement.scale_x + placement.offset_x) * 2 / model_width - 1)
    gy = torch.from_numpy(((np.arange(height) + 0.5) * placement.scale_y + placement.offset_y) * 2 / model_height - 1)
    scores = logits.float()[None]
    out = np.empty((height, width), dtype=np.uint8)
    band = max(1, BAND_PIXELS // width)
    for top in range(0, height, band):
        rows, cols = torch.meshgrid(gy[top : top + band].float(), gx.float(), indexing="ij")
        grid = torch.stack([cols, rows], dim=-1)[None]
        sampled = F.grid_sample(scores, grid, mode="bilinear", padding_mode="border", align_corners=False)
        out[top : top + band] = sampled[0].argmax(0).numpy()
    return out


def class_palette(background: int | None) -> list[int]:
    """A 256-colour PNG palette (flat RGB): the background class (class 0 when none is set) black, the others
    bright colours a golden-ratio step of hue apart."""
    black = 0 if background is None else background
    palette = []
    for index in range(MAX_CLASSES):
        rgb = (0.0, 0.0, 0.0) if index == black else colorsys.hsv_to_rgb((index * GOLDEN_RATIO) % 1.0, 0.7, 1.0)
        palette.extend(round(255 * c) for c in rgb)
    return palette


def mask_png(classes: np.ndarray, palette: list[int]) -> bytes:
    """An (H, W) uint8 class map as an 8-bit palette PNG whose pixel values are the class indices."""
    image = Image.fromarray(classes)
    image.putpalette(palette)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def accepts_png(accept: str | None) -> bool:
    """Whether an Accept header lists image/png (with a non-zero quality)."""
    for part in (accept or "").split(","):
        media, *params = (piece.strip().lower() for piece in part.split(";"))
        quality = next((p.partition("=")[2] for p in params if p.startswith("q=")), "1")
        if media == PNG_CONTENT_TYPE and _positive(quality):
            return True
    return False


def _positive(quality: str) -> bool:
    try:
        return float(quality) > 0
    except ValueError:
        return False


class MaskPng(Protocol[object]):
    """TorchServe's request bodies answered with the class map PNG itself: claims the requests whose Accept
    header lists image/png (OIP routes are claimed before it by the OIP protocol); one image per request
    (a list is refused with 406)."""

    name = "PNG class map (Accept: image/png)"
    requires = ("decode", "encode_png")

    def claims(self, request: RequestInfo) -> bool:
        return accepts_png(request.header("accept"))

    def parse(self, request: RequestInfo) -> object:
        return request_body(request.row, request.content_type)

    def decode(self, handler: ServingHandler, envelope: object) -> Decoded:
        item = handler.decode(envelope)
        if item.many:
            raise NotAcceptable(f"Accept: {PNG_CONTENT_TYPE} answers one image with its PNG; send one image (not "
                                "a list) per request, or accept application/json")
        return item

    def encode(self, handler: ServingHandler, request: RequestInfo, envelope: object, item: Decoded,
               outputs: ModelOutputs) -> Reply:
        return Reply(handler.encode_png(outputs, item), PNG_CONTENT_TYPE)


MASK_PNG = MaskPng()


class ImageSegmenter(ImageClassifier):
    """Semantic segmentation with the contract of `handlers.base` and the requests of `handlers.image` (see the
    module docstring). Speaks the Open Inference Protocol and answers PNGs to `Accept: image/png`."""

    protocols = (OPEN_INFERENCE, MASK_PNG)
    oip_outputs = ("class_map",)

    @property
    def segmentation(self) -> SegmentationSettings:
        return self.settings.segmentation or SegmentationSettings()

    @cached_property
    def palette(self) -> list[int]:
        return class_palette(self.segmentation.background)

    def check_outputs(self, outputs: ModelOutputs) -> None:
        """Refuse, at start, an output that is not (n, C, h, w) class scores for C <= 256 classes, one per label,
        or a background class the model does not have."""
        scores = outputs.main
        if not isinstance(scores, torch.Tensor) or scores.ndim != 4 or not scores.is_floating_point():
            shape = list(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
            raise ModelConfigError(f"model output {outputs.main_name!r} is {shape}; a segmenter needs (n, classes, "
                                   "H, W) class scores (set handler.output to the output that holds them, e.g. out)")
        classes = scores.shape[1]
        if classes > MAX_CLASSES:
            raise ModelConfigError(f"model output {outputs.main_name!r} has {classes} classes; the class map is an "
                                   f"8-bit PNG: at most {MAX_CLASSES}")
        if self.labels is not None and classes != len(self.labels):
            raise ModelConfigError(f"model output {outputs.main_name!r} has {classes} classes but the labels file "
                                   f"has {len(self.labels)}: wrong output (set handler.output) or wrong labels")
        background = self.segmentation.background
        if background is not None and background >= classes:
            raise ModelConfigError(f"handler.segmentation.background = {background}: the model has classes "
                                   f"0..{classes - 1}")

    def class_maps(self, outputs: ModelOutputs, item: DecodedImages) -> list[np.ndarray]:
        """Each of the request's images' class map, (H, W) uint8 at its own size."""
        return [class_map(logits, placement, self.image.width, self.image.height)
                for logits, placement in zip(outputs.main, item.placements, strict=True)]

    def encode(self, outputs: ModelOutputs, item: DecodedImages) -> SegmentationAnswer | list[SegmentationAnswer]:
        answers = [self.answer(classes, outputs.main.shape[1]) for classes in self.class_maps(outputs, item)]
        return answers if item.many else answers[0]

    def answer(self, classes: np.ndarray, num_classes: int) -> SegmentationAnswer:
        """One image's answer from its class map (`handlers.answers.SegmentationAnswer`)."""
        fractions = np.bincount(classes.ravel(), minlength=num_classes) / classes.size
        background = self.segmentation.background
        present: list[ClassShare] = [
            {"index": index, "label": class_label(self.labels, index),
             "fraction": round(float(fractions[index]), FRACTION_DECIMALS)}
            for index in np.flatnonzero(fractions).tolist() if index != background
        ]
        answer: SegmentationAnswer = {"width": classes.shape[1], "height": classes.shape[0],
                                      "mask": base64.b64encode(mask_png(classes, self.palette)).decode("ascii"),
                                      "classes": present}
        if background is not None:
            answer["background_fraction"] = round(float(fractions[background]), FRACTION_DECIMALS)
        return answer

    def encode_png(self, outputs: ModelOutputs, item: DecodedImages) -> bytes:
        """The PNG of a one-image request's class map (`MaskPng`)."""
        return mask_png(self.class_maps(outputs, item)[0], self.palette)

    def encode_oip(self, outputs: ModelOutputs, item: DecodedImages) -> dict[str, np.ndarray]:
        """`class_map` UINT8 [n, H, W] (an OIP request's images share one size)."""
        return {"class_map": np.stack(self.class_maps(outputs, item)).astype("<u1")}
