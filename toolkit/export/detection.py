"""Dense digit models for scenes: an anchor-free detector and a segmenter (small, CPU-trainable in minutes).

Contracts (inputs are grayscale canvases ``(N, 1, H, W)`` float32 normalised as ``(x / 255 - mean) / std`` by the
serving handler; ``H`` and ``W`` multiples of 16, the demo models use 128x128):

- ``DigitDetector``: CenterNet-like. ``forward`` returns the final detections as a dict of batched padded
  tensors: ``boxes`` ``(N, K, 4)`` float32 ``(x1, y1, x2, y2)`` in the input's pixels, ``scores`` ``(N, K)``
  float32 in 0..1 (best first), ``labels`` ``(N, K)`` int64 class indices; ``K = max_detections``. Rows scoring
  under ``min_score`` are padding: score 0, box zeros, label -1. ``heads`` gives the raw maps training needs.
- ``DigitSegmenter``: U-Net-like; ``(N, num_classes + 1, H, W)`` float32 class logits, class 0 = background.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DIGIT_CLASSES = 10
DETECTOR_STRIDE = 8  # input pixels per heatmap cell


def conv_bn(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """3x3 convolution (padding keeps the size at stride 1), batch norm, ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def up_add(coarse: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
    """``fine`` plus ``coarse`` (already projected to ``fine``'s channels) upsampled 2x (nearest)."""
    return fine + F.interpolate(coarse, scale_factor=2.0, mode="nearest")


class DigitDetector(nn.Module):
    """Centre heatmap per class at stride 8, plus per cell the centre's sub-cell offset and the box's log-size.

    Backbone: strides 2-4-8-16 (16, 32, 64, 128 channels), the stride-16 features added back into the stride-8
    ones (feature-pyramid style). Decoding inside ``forward``: sigmoid heatmaps, 3x3 max-pool peak picking,
    top-K over classes and cells, box from the peak's offset and size.
    """

    STRIDE = DETECTOR_STRIDE

    def __init__(self, num_classes: int = DIGIT_CLASSES, max_detections: int = 10, min_score: float = 0.05) -> None:
        super().__init__()
        self.max_detections = max_detections
        self.min_score = min_score
        self.stride = DETECTOR_STRIDE
        self.stem = nn.Sequential(conv_bn(1, 16, 2), conv_bn(16, 32, 2), conv_bn(32, 32))
        self.stage3 = nn.Sequential(conv_bn(32, 64, 2), conv_bn(64, 64))
        self.stage4 = nn.Sequential(conv_bn(64, 128, 2), conv_bn(128, 128))
        self.lateral4 = nn.Conv2d(128, 64, 1)
        self.smooth3 = conv_bn(64, 64)
        self.heat = nn.Sequential(conv_bn(64, 64), nn.Conv2d(64, num_classes, 1))
        self.box = nn.Sequential(conv_bn(64, 32), nn.Conv2d(32, 4, 1))
        # Start the heatmaps near a low prior (CenterNet): sigmoid(-2.19) ~ 0.1.
        nn.init.constant_(self.heat[1].bias, -2.19)

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw maps at stride 8: heatmap logits ``(N, C, H/8, W/8)`` and box regression ``(N, 4, H/8, W/8)``
        (x and y offset logits, log of width and height in cells)."""
        c3 = self.stage3(self.stem(x))
        p3 = self.smooth3(up_add(self.lateral4(self.stage4(c3)), c3))
        return self.heat(p3), self.box(p3)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Detections of ``x`` ``(N, 1, H, W)``: ``boxes``, ``scores``, ``labels`` (see the module contract)."""
        heat, box = self.heads(x)
        return decode_centres(heat, box, self.stride, self.max_detections, self.min_score)


def decode_centres(heat_logits: torch.Tensor, box: torch.Tensor, stride: int, k: int,
                   min_score: float) -> dict[str, torch.Tensor]:
    """CenterNet decoding: peaks of the sigmoid heatmaps (3x3 max-pool over cells and classes), the ``k`` best,
    each box from its cell, offset and size, clipped to the input; rows under ``min_score`` padded."""
    heat = torch.sigmoid(heat_logits)
    # A peak is the best score of its 3x3 neighbourhood over every class: one digit, one label.
    best = F.max_pool2d(heat.amax(dim=1, keepdim=True), 3, stride=1, padding=1)
    peaks = heat * (heat == best).to(heat.dtype)
    n, _, height, width = peaks.shape
    scores, index = peaks.reshape(n, -1).topk(k, dim=1)
    labels = torch.div(index, height * width, rounding_mode="floor")
    cell = index - labels * (height * width)
    rows = torch.div(cell, width, rounding_mode="floor")
    cols = cell - rows * width
    reg = box.reshape(n, 4, height * width).gather(2, cell.unsqueeze(1).expand(n, 4, k))
    cx = (cols.to(heat.dtype) + torch.sigmoid(reg[:, 0])) * stride
    cy = (rows.to(heat.dtype) + torch.sigmoid(reg[:, 1])) * stride
    half_w = torch.exp(reg[:, 2].clamp(max=6.0)) * (stride / 2)
    half_h = torch.exp(reg[:, 3].clamp(max=6.0)) * (stride / 2)
    boxes = torch.stack([(cx - half_w).clamp(0.0, float(width * stride)),
                         (cy - half_h).clamp(0.0, float(height * stride)),
                         (cx + half_w).clamp(0.0, float(width * stride)),
                         (cy + half_h).clamp(0.0, float(height * stride))], dim=2)
    keep = scores >= min_score
    return {"boxes": boxes * keep.unsqueeze(2).to(boxes.dtype),
            "scores": scores * keep.to(scores.dtype),
            "labels": torch.where(keep, labels, torch.full_like(labels, -1))}


class DigitSegmenter(nn.Module):
    """U-Net-like: encoder at strides 2-4-8-16 (16, 32, 64, 96 channels), decoder back to stride 2 adding each
    level's features (1x1 lateral projections), a 1x1 classifier to ``num_classes + 1`` logits at stride 2,
    upsampled bilinearly to the input's size (full-resolution layers cost most of a CPU training step)."""

    def __init__(self, num_classes: int = DIGIT_CLASSES) -> None:
        super().__init__()
        self.enc1 = conv_bn(1, 16, 2)
        self.enc2 = nn.Sequential(conv_bn(16, 32, 2), conv_bn(32, 32))
        self.enc3 = nn.Sequential(conv_bn(32, 64, 2), conv_bn(64, 64))
        self.enc4 = nn.Sequential(conv_bn(64, 96, 2), conv_bn(96, 96))
        self.lat4, self.dec3 = nn.Conv2d(96, 64, 1), conv_bn(64, 64)
        self.lat3, self.dec2 = nn.Conv2d(64, 32, 1), conv_bn(32, 32)
        self.lat2, self.dec1 = nn.Conv2d(32, 16, 1), conv_bn(16, 32)
        self.classifier = nn.Conv2d(32, num_classes + 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(N, num_classes + 1, H, W)`` of ``x`` ``(N, 1, H, W)``."""
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        d3 = self.dec3(up_add(self.lat4(self.enc4(e3)), e3))
        d2 = self.dec2(up_add(self.lat3(d3), e2))
        d1 = self.dec1(up_add(self.lat2(d2), e1))
        return F.interpolate(self.classifier(d1), scale_factor=2.0, mode="bilinear", align_corners=False)
