"""Models of a user's own, not the demo models, for the export, archive and serving tests: a small ResNet with
BatchNorm (images 3x32x32 -> 10 class logits) and a model with a dict output that `torch.jit.script` refuses
(30 features -> {"logits": (n, 2), "embedding": (n, 8)}), each with a checkpoint of trained-looking weights
(BatchNorm running statistics far from their defaults, so a BatchNorm served wrong shows: `tests/own_exports.py`).

This file imports torch only: archives of eager models pack it as their model source (archive.model_source).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    """ResNet's basic block: two 3x3 conv + BatchNorm, the input added back (through a 1x1 conv + BatchNorm when
    the shape changes)."""

    def __init__(self, inputs: int, outputs: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(outputs)
        self.conv2 = nn.Conv2d(outputs, outputs, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(outputs)
        self.shortcut = nn.Identity()
        if stride != 1 or inputs != outputs:
            self.shortcut = nn.Sequential(nn.Conv2d(inputs, outputs, 1, stride, bias=False), nn.BatchNorm2d(outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class SmallResNet(nn.Module):
    """(n, 3, 32, 32) normalised images -> (n, 10) logits: stem, two stages of basic blocks, pooling, linear."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.stages = nn.Sequential(BasicBlock(16, 16, 1), BasicBlock(16, 32, 2))
        self.head = nn.Linear(32, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.stages(self.stem(x))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(features, 1), 1))


class TwoHeads(nn.Module):
    """(n, 30) features -> {"logits": (n, 2), "embedding": (n, 8)}. The embedding sums its layers with a
    generator expression, which TorchScript cannot compile."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(30, 16), nn.ReLU())
        self.projections = nn.ModuleList([nn.Linear(16, 8), nn.Linear(16, 8)])
        self.classifier = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = self.trunk(x)
        embedding = sum(project(hidden) for project in self.projections)
        return {"logits": self.classifier(hidden), "embedding": embedding}


class ScoredClassifier(nn.Module):
    """(n, 30) features -> (objectness (n, 1), class logits (n, 10)): two outputs, the first a one-column head,
    the one a classifier must not read."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Linear(30, 32)
        self.score = nn.Linear(32, 1)
        self.classes = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = F.relu(self.trunk(x))
        return self.score(hidden), self.classes(hidden)


def build_resnet() -> nn.Module:
    return SmallResNet()


def build_two_heads() -> nn.Module:
    return TwoHeads()


def build_scored_classifier() -> nn.Module:
    return ScoredClassifier()
