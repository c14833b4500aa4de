"""The JSON answers our handlers send, and where each keeps its prediction.

Torch-free on purpose: clients, the soak and the tests read answers with `prediction()` without loading a model.
"""

from __future__ import annotations

from typing import TypedDict


class TopK(TypedDict):
    """One of the `top_k` most probable classes of an image."""

    index: int
    label: str
    probability: float


class ImageAnswer(TypedDict, total=False):
    """`handlers.image` answer for one image (a request of n images gets a list of n of these).

    `predicted_label` and `label` always; `probabilities` (every class, in index order) when `top_k` is 0,
    else `top_k`, most probable first. Probabilities are rounded to 6 decimals.
    """

    predicted_label: int
    label: str
    probabilities: list[float]
    top_k: list[TopK]


class TabularAnswer(TypedDict, total=False):
    """`handlers.tabular` answer for one request of n rows: n predictions and labels, in row order, and
    `probabilities` ((n, classes), rounded to 6 decimals) when the request set `return_probabilities`."""

    predictions: list[int]
    labels: list[str]
    probabilities: list[list[float]]


class Detection(TypedDict):
    """One object found by `handlers.detection`: its class, score and box (x1, y1, x2, y2) in the request
    image's pixels (rounded to 0.01 px; score to 6 decimals)."""

    label: str
    index: int
    score: float
    box: list[float]


class DetectionAnswer(TypedDict):
    """`handlers.detection` answer for one image: its detections, best score first."""

    detections: list[Detection]


class ClassShare(TypedDict):
    """A class present in a segmentation's class map and the fraction of the image's pixels it covers."""

    index: int
    label: str
    fraction: float


class SegmentationAnswer(TypedDict, total=False):
    """`handlers.segmentation` answer for one image: the class map at the request image's size (`width` x
    `height`) as a base64 PNG whose pixel values are the class indices (`mask`), the classes present with their
    pixel fractions (in index order), and `background_fraction` when `handler.segmentation.background` names a
    background class (which is then not among `classes`)."""

    width: int
    height: int
    mask: str
    classes: list[ClassShare]
    background_fraction: float


class EmbeddingAnswer(TypedDict):
    """`handlers.embedding` answer for one image or text: its vector."""

    embedding: list[float]


# The key that holds the predicted class index (indices) in each classifier's answer schema above.
PREDICTION_KEYS = ("predicted_label", "predictions")
# The keys of the answers whose prediction is the sorted labels of what they found (detections, classes present).
FOUND_KEYS = ("detections", "classes")


def prediction(answer: object) -> object:
    """The predicted class index (image) or indices (tabular) of one answer, or the sorted labels of what a
    detection or segmentation answer found (a label once per object found; per class present); a list of them
    for a list answer.

    None for anything else, such as an error body `{"code", "type", "message"}` or an embedding.
    """
    if isinstance(answer, list):
        return [prediction(item) for item in answer]
    if isinstance(answer, dict):
        found = next((key for key in FOUND_KEYS if isinstance(answer.get(key), list)), None)
        if found is not None:
            return sorted(str(entry.get("label")) for entry in answer[found] if isinstance(entry, dict))
        return next((answer[key] for key in PREDICTION_KEYS if key in answer), None)
    return None
