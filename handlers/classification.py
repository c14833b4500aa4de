"""What the classifiers (image, tabular, text) share: their model output is one row of class scores per item.

Scores are whatever the model returns (log-probabilities or logits); the answers carry their softmax.
"""

from __future__ import annotations

import torch

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
