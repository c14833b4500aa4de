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


# The key that holds the predicted class index (indices) in each answer schema above.
PREDICTION_KEYS = ("predicted_label", "predictions")


def prediction(answer: object) -> object:
    """The predicted class index (image) or indices (tabular) of one answer; a list of them for a list answer.

    None for anything else, such as an error body `{"code", "type", "message"}`.
    """
    if isinstance(answer, list):
        return [prediction(item) for item in answer]
    if isinstance(answer, dict):
        return next((answer[key] for key in PREDICTION_KEYS if key in answer), None)
    return None
