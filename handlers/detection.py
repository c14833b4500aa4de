"""ObjectDetector: images -> the objects found in each, with boxes in the request image's own pixels.

Requests are those of the image classifier (`handlers.image`: encoded images, base64, pixel arrays, a list of
them, OIP), through the same photo pipeline; settings from `handler.image` and `handler.detection`.

The model returns its detections in either form detection models have (`per_image_detections`):
- batched padded tensors, a dict (names in `handler.detection.outputs`) or a tuple in the order (boxes, scores,
  labels[, count]): `boxes` (N, K, 4) x1, y1, x2, y2 in the model input's pixels, `scores` (N, K), `labels`
  (N, K); rows past an image's `count` (N,) or with a negative label are padding;
- torchvision's form, a list of N dicts with `boxes` (k, 4), `scores` (k,), `labels` (k,).

Per image the handler keeps the detections scoring at least `score_threshold`, runs class-wise non-maximum
suppression when `iou_threshold` is set (in the model input's pixels: IoU does not change under the fit's
scaling), maps each box back to the request image by its `Placement` (undoing stretch, letterbox or crop;
clipped to the part of the image the model saw; a box left without area, e.g. inside letterbox padding, is
dropped) and answers the best `max_detections`, best first:
    {"detections": [{"label": "7", "index": 7, "score": 0.97, "box": [x1, y1, x2, y2]}, ...]}
(scores rounded to 6 decimals, box corners to 0.01 px; a list of these for a list of images). The Open Inference
Protocol answers `boxes` FP32 [n, K, 4], `scores` FP32 [n, K] and `labels` INT64 [n, K], K the most detections
of the request's images, the rest padded with zero boxes and scores and label -1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from handlers.answers import Detection, DetectionAnswer
from handlers.boxes import class_wise_nms
from handlers.classification import class_label
from handlers.config import DetectionOutputs, DetectionSettings, ModelYaml
from handlers.errors import ModelConfigError
from handlers.image import DecodedImages, ImageClassifier
from handlers.imaging import Placement
from handlers.outputs import ModelOutputs

DETECTION_KEYS = ("boxes", "scores", "labels")  # the keys of one image's detections after `per_image_detections`
BOX_DECIMALS, SCORE_DECIMALS = 2, 6


@dataclass(frozen=True)
class ImageDetections:
    """One image's detections kept: `boxes` (k, 4) float64 in request-image pixels, `scores` (k,) float64 and
    `labels` (k,) int64, best score first."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray


def per_image_detections(raw: object, names: DetectionOutputs, images: int) -> list[dict[str, torch.Tensor]]:
    """A detection model's forward result (either form of the module docstring) -> per image a dict of its
    `boxes` (k, 4), `scores` (k,) and `labels` (k,) on the CPU, padding removed. ModelConfigError names what
    the model returned when it is neither form."""
    if isinstance(raw, Mapping):
        missing = [name for name in (names.boxes, names.scores, names.labels) if name not in raw]
        if missing:
            raise ModelConfigError(f"the detection model returned the outputs {list(raw)}, without {missing}; name "
                                   "them in handler.detection.outputs (boxes, scores, labels, count)")
        count = raw[names.count] if names.count is not None else None
        return _unpadded(raw[names.boxes], raw[names.scores], raw[names.labels], count, images)
    if isinstance(raw, Sequence) and raw and all(isinstance(item, Mapping) for item in raw):
        return [_torchvision_row(item, names, i) for i, item in enumerate(raw)]
    if isinstance(raw, Sequence) and len(raw) in (3, 4) and all(isinstance(t, torch.Tensor) for t in raw):
        return _unpadded(*raw[:3], raw[3] if len(raw) == 4 else None, images)
    raise ModelConfigError(f"the detection model returned {_describe(raw)}; expected boxes, scores and labels as a "
                           "dict or tuple of (N, K, ...) tensors, or a list of per-image dicts (torchvision's form)")


def _describe(raw: object) -> str:
    if isinstance(raw, torch.Tensor):
        return f"one tensor {list(raw.shape)}"
    if isinstance(raw, Sequence):
        return f"a {type(raw).__name__} of {len(raw)} {sorted({type(item).__name__ for item in raw})}"
    return f"a {type(raw).__name__}"


def _unpadded(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, count: torch.Tensor | None,
              images: int) -> list[dict[str, torch.Tensor]]:
    """Batched padded detections -> per image, the first `count[i]` rows (all K without a count)."""
    boxes, scores, labels = (t.detach().cpu() for t in (boxes, scores, labels))
    rows = scores.shape[1] if scores.ndim == 2 else -1
    if boxes.shape != (images, rows, 4) or scores.shape != (images, rows) or labels.shape != (images, rows):
        raise ModelConfigError(f"detection outputs of {images} images: boxes {list(boxes.shape)}, scores "
                               f"{list(scores.shape)}, labels {list(labels.shape)}; expected (N, K, 4), (N, K), "
                               f"(N, K) with N = {images}")
    counts = [rows] * images if count is None else count.detach().cpu().reshape(-1).long().tolist()
    if len(counts) != images:
        raise ModelConfigError(f"the detection count output has {len(counts)} values for {images} images")
    return [{"boxes": boxes[i, :c], "scores": scores[i, :c], "labels": labels[i, :c]}
            for i, c in enumerate(counts)]


def _torchvision_row(item: Mapping, names: DetectionOutputs, index: int) -> dict[str, torch.Tensor]:
    """One image's dict of torchvision's form, checked: boxes (k, 4), scores (k,), labels (k,)."""
    try:
        boxes, scores, labels = (item[name].detach().cpu() for name in (names.boxes, names.scores, names.labels))
    except (KeyError, AttributeError):
        expected = f"{names.boxes!r}, {names.scores!r}, {names.labels!r}"
        raise ModelConfigError(f"image {index}'s detections have the keys {sorted(item)}; expected tensors "
                               f"{expected} (handler.detection.outputs)") from None
    k = len(scores)
    if boxes.shape != (k, 4) or scores.shape != (k,) or labels.shape != (k,):
        raise ModelConfigError(f"image {index}'s detections: boxes {list(boxes.shape)}, scores {list(scores.shape)}, "
                               f"labels {list(labels.shape)}; expected (k, 4), (k,), (k,)")
    return {"boxes": boxes, "scores": scores, "labels": labels}


def kept_detections(row: Mapping[str, torch.Tensor], placement: Placement,
                    settings: DetectionSettings) -> ImageDetections:
    """One image's detections (model-input pixels, any order) -> those the answer keeps (module docstring)."""
    boxes = row["boxes"].double().numpy().reshape(-1, 4)
    scores = row["scores"].double().numpy().reshape(-1)
    labels = np.rint(row["labels"].double().numpy().reshape(-1)).astype(np.int64)
    keep = np.flatnonzero((labels >= 0) & (scores >= settings.score_threshold) & np.isfinite(boxes).all(axis=1))
    if settings.iou_threshold is not None:
        keep = keep[class_wise_nms(boxes[keep], scores[keep], labels[keep], settings.iou_threshold)]
    else:
        keep = keep[np.argsort(-scores[keep], kind="stable")]
    mapped = placement.to_source(boxes[keep])
    visible = (mapped[:, 2] > mapped[:, 0]) & (mapped[:, 3] > mapped[:, 1])
    chosen = np.flatnonzero(visible)[: settings.max_detections]
    return ImageDetections(mapped[chosen], scores[keep][chosen], labels[keep][chosen])


class ObjectDetector(ImageClassifier):
    """Object detection with the contract of `handlers.base` and the requests of `handlers.image`; settings
    from `handler.image` and `handler.detection` (see the module docstring)."""

    section = "detection"
    oip_outputs = ("boxes", "scores", "labels")

    @property
    def detection(self) -> DetectionSettings:
        return self.settings.detection

    def configure(self, config: ModelYaml) -> None:
        """The image classifier's checks, plus `handler.image`; `handler.output` and `extra_outputs` are refused
        (the detector reads its outputs by `handler.detection.outputs` and answers detections only)."""
        super().configure(config)
        self.settings.section("image")
        if self.settings.output is not None or self.settings.extra_outputs:
            raise ModelConfigError("object_detector reads boxes, scores and labels by handler.detection.outputs "
                                   "and answers detections only; remove handler.output and handler.extra_outputs")

    def forward(self, inputs: tuple[torch.Tensor, ...]) -> list[dict[str, torch.Tensor]]:
        """The model's detections, one dict per image (`per_image_detections`)."""
        return per_image_detections(self.model(*inputs), self.detection.outputs, len(inputs[0]))

    def check_outputs(self, outputs: ModelOutputs) -> None:
        """Nothing beyond `per_image_detections`, which the warm-up forward already ran."""

    def detections(self, outputs: ModelOutputs, item: DecodedImages) -> list[ImageDetections]:
        """The detections each of the request's images keeps, in request-image pixels."""
        return [kept_detections(row, placement, self.detection)
                for row, placement in zip(outputs.main, item.placements, strict=True)]

    def encode(self, outputs: ModelOutputs, item: DecodedImages) -> DetectionAnswer | list[DetectionAnswer]:
        answers = [self.answer(found) for found in self.detections(outputs, item)]
        return answers if item.many else answers[0]

    def answer(self, found: ImageDetections) -> DetectionAnswer:
        """One image's answer: its detections, best first."""
        boxes = np.round(found.boxes, BOX_DECIMALS).tolist()
        entries: list[Detection] = [
            {"label": class_label(self.labels, index), "index": index, "score": round(score, SCORE_DECIMALS),
             "box": box}
            for index, score, box in zip(found.labels.tolist(), found.scores.tolist(), boxes, strict=True)
        ]
        return {"detections": entries}

    def encode_oip(self, outputs: ModelOutputs, item: DecodedImages) -> dict[str, np.ndarray]:
        """`boxes` FP32 [n, K, 4], `scores` FP32 [n, K], `labels` INT64 [n, K] (padding: zeros and label -1)."""
        found = self.detections(outputs, item)
        k = max(len(f.scores) for f in found)
        boxes = np.zeros((len(found), k, 4), dtype="<f4")
        scores = np.zeros((len(found), k), dtype="<f4")
        labels = np.full((len(found), k), -1, dtype="<i8")
        for i, f in enumerate(found):
            n = len(f.scores)
            boxes[i, :n], scores[i, :n], labels[i, :n] = f.boxes, f.scores, f.labels
        return {"boxes": boxes, "scores": scores, "labels": labels}
