"""What the classifiers (image, tabular, text) share: their model output is one row of class scores per item.

Scores are whatever the model returns (log-probabilities or logits); the answers carry their softmax.
"""

from __future__ import annotations

import torch

from handlers.answers import ImageAnswer
from handlers.errors import ModelConfigError
from handlers.outputs import ModelOutputs


def check_class_scores(outputs: ModelOutputs, labels: list[str] | None) -> None:
    """Refuse a model whose output the classifier cannot read: not (n, classes) scores, or a number of classes
    other than the number of labels (e.g. the wrong output of a two-output model was picked)."""
    scores = outputs.main
    if not isinstance(scores, torch.Tensor) or scores.ndim != 2:
        shape = list(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ModelConfigError(f"model output {outputs.main_name!r} is {shape}; a classifier needs (n, classes) "
                               "scores (set handler.output to the output that holds them)")
    if labels is not None and scores.shape[1] != len(labels):
        raise ModelConfigError(f"model output {outputs.main_name!r} has {scores.shape[1]} classes but the labels "
                               f"file has {len(labels)}: wrong output (set handler.output) or wrong labels")


def class_probabilities(outputs: ModelOutputs) -> torch.Tensor:
    """Softmax of the class scores the classifier reads, float32 (n, classes)."""
    return torch.softmax(outputs.main.float(), dim=1)


def ranked_answer(probabilities: list[float], labels: list[str] | None, top_k: int) -> ImageAnswer:
    """One item's answer from its probabilities, one per class in index order (ties: the lowest index):
    `predicted_label`, `label`, and every probability (`top_k` 0) or the `top_k` most probable classes."""
    classes = range(len(probabilities))
    index = max(classes, key=probabilities.__getitem__)
    answer: ImageAnswer = {"predicted_label": index, "label": class_label(labels, index)}
    if top_k:
        ranked = sorted(classes, key=probabilities.__getitem__, reverse=True)[:top_k]
        answer["top_k"] = [
            {"index": i, "label": class_label(labels, i), "probability": round(probabilities[i], 6)} for i in ranked
        ]
    else:
        answer["probabilities"] = [round(p, 6) for p in probabilities]
    return answer


def class_label(labels: list[str] | None, index: int) -> str:
    """The name of class `index`: its label, else the index as text."""
    return labels[index] if labels and index < len(labels) else str(index)
