"""Detection and segmentation models of the tests' own (TorchScript-able, no parameters, so `save_scripted`
leaves them as written), and the canvases they are sent.

- `FixedDict`, `FixedTuple`, `FixedList`: the same detections for every image, in the three forms detection
  models return (padded dict; padded tuple with a count; torchvision's list of per-image dicts).
- `InkBox`: finds the one bright object of an image: its box is the ink's bounding box in the model input
  (pixels above the configured mean), label 3, score 0.9; an image without ink gets padding only.
- `InkClasses`: segmentation logits (N, 3, H, W): background where the pixel is below the mean, class 1 on
  dim ink, class 2 on bright ink (normalised value above 0.8).
"""

from __future__ import annotations

from typing import Dict, List  # noqa: UP035 (TorchScript reads these annotations)

import numpy as np
import torch
from torch import nn

IMAGE = {"width": 32, "height": 32, "channels": 1, "mean": [0.5], "std": [0.5], "fit": "stretch"}
INK_LABEL = 3


class FixedDict(nn.Module):
    """`boxes` (N, K, 4), `scores` (N, K), `labels` (N, K): the same rows for every image."""

    def __init__(self, boxes: list, scores: list, labels: list) -> None:
        super().__init__()
        self.register_buffer("boxes", torch.tensor(boxes, dtype=torch.float32))
        self.register_buffer("scores", torch.tensor(scores, dtype=torch.float32))
        self.register_buffer("labels", torch.tensor(labels, dtype=torch.int64))

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:  # noqa: UP006
        n = x.shape[0]
        return {"boxes": self.boxes.expand(n, -1, -1), "scores": self.scores.expand(n, -1),
                "labels": self.labels.expand(n, -1)}


class FixedTuple(FixedDict):
    """(boxes, scores, labels, count): the rows past `count` are garbage the handler must not read."""

    def __init__(self, boxes: list, scores: list, labels: list, count: int) -> None:
        super().__init__(boxes, scores, labels)
        self.count = count

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        n = x.shape[0]
        return (self.boxes.expand(n, -1, -1), self.scores.expand(n, -1), self.labels.expand(n, -1),
                torch.full([n], self.count, dtype=torch.int64))


class FixedList(FixedDict):
    """torchvision's form: a list of N dicts of (k, 4), (k,), (k,) tensors."""

    def forward(self, x: torch.Tensor) -> List[Dict[str, torch.Tensor]]:  # noqa: UP006
        out: List[Dict[str, torch.Tensor]] = []  # noqa: UP006
        for _ in range(x.shape[0]):
            out.append({"boxes": self.boxes, "scores": self.scores, "labels": self.labels})
        return out


class InkBox(nn.Module):
    """The bounding box of the pixels above the mean (normalised value > 0), per image, as padded outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.label = INK_LABEL

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:  # noqa: UP006
        ink = x[:, 0] > 0.0
        n, height, width = ink.shape
        rows, cols = ink.any(dim=2), ink.any(dim=1)
        ys, xs = torch.arange(height).expand(n, height), torch.arange(width).expand(n, width)
        x1 = torch.where(cols, xs, width).min(dim=1).values
        x2 = torch.where(cols, xs + 1, 0).max(dim=1).values
        y1 = torch.where(rows, ys, height).min(dim=1).values
        y2 = torch.where(rows, ys + 1, 0).max(dim=1).values
        found = cols.any(dim=1)
        boxes = torch.stack([x1, y1, x2, y2], dim=1).float() * found.unsqueeze(1).float()
        return {"boxes": boxes.unsqueeze(1), "scores": (found.float() * 0.9).unsqueeze(1),
                "labels": torch.where(found, self.label, -1).unsqueeze(1)}


class InkClasses(nn.Module):
    """Logits (N, 3, H, W): -x (background), x (ink), 3x - 1.6 (bright ink: wins where x > 0.8)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([-x, x, 3.0 * x - 1.6], dim=1)


def canvas(width: int, height: int, rects: list[tuple[int, int, int, int, int]]) -> np.ndarray:
    """A dark (height, width) uint8 canvas with filled rectangles (x1, y1, x2, y2, intensity)."""
    pixels = np.zeros((height, width), dtype=np.uint8)
    for x1, y1, x2, y2, value in rects:
        pixels[y1:y2, x1:x2] = value
    return pixels
