"""Model architectures served by the example archives, plus a name registry.

Contracts (the classifiers of the examples return log-probabilities, ``log_softmax`` over the class axis;
``ResNet18`` returns logits, as torchvision's):

- ``MnistCNN``: input ``(N, 1, 28, 28)`` float32, already normalised as
  ``(x / 255 - 0.1307) / 0.3081`` (the serving handler does this from config); output ``(N, 10)``.
- ``TabularMLP``: input ``(N, 30)`` float32 raw breast-cancer features (sklearn column order);
  standardisation ``(x - mean) / std`` happens inside the module with the registered buffers
  ``mean`` and ``std`` (shape ``(30,)``); output ``(N, 2)``.
- ``ResNet18``: torchvision's ``resnet18`` written without torchvision: input ``(N, 3, 224, 224)`` float32
  normalised with ImageNet's mean and std (``Resize(256)`` + ``CenterCrop(224)`` before it, the handler's
  ``fit: center_crop``); output ``(N, 1000)`` logits.
- ``TokenBagClassifier``: token ids and attention mask ``(N, L)`` (the text handler's inputs) -> ``(N, classes)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

TABULAR_FEATURES = 30
TABULAR_CLASSES = 2


class UnknownArchitectureError(ValueError):
    """The architecture name is not in ``ARCHITECTURES``."""


class StateDictMismatchError(ValueError):
    """A state_dict does not fit an architecture (missing/unexpected keys or wrong shapes)."""


class MnistCNN(nn.Module):
    """The classic PyTorch MNIST example CNN (same layer names, so its checkpoints load as-is).

    conv 1→32 3×3, ReLU, conv 32→64 3×3, ReLU, max-pool 2, dropout 0.25, flatten,
    fc 9216→128, ReLU, dropout 0.5, fc 128→10, log-softmax.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map normalised images ``(N, 1, 28, 28)`` to log-probabilities ``(N, 10)``."""
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)


class TabularMLP(nn.Module):
    """MLP 30→64→32→2 for the breast-cancer data with built-in feature standardisation.

    ``mean``/``std`` are buffers (saved in the state_dict and in TorchScript); by default they are
    the identity transform (zeros/ones) until set from training data or loaded from a checkpoint.
    """

    def __init__(self, mean: torch.Tensor | None = None, std: torch.Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("mean", _feature_vector(mean, 0.0))
        self.register_buffer("std", _feature_vector(std, 1.0))
        self.net = nn.Sequential(
            nn.Linear(TABULAR_FEATURES, 64),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Linear(64, 32),
            nn.ReLU(),
            nn.Linear(32, TABULAR_CLASSES),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map raw features ``(N, 30)`` to log-probabilities ``(N, 2)``."""
        z = (x - self.mean) / self.std
        return F.log_softmax(self.net(z), dim=1)


def _feature_vector(value: torch.Tensor | None, default: float) -> torch.Tensor:
    """Return a float32 ``(30,)`` tensor: ``value`` (validated) or filled with ``default``."""
    if value is None:
        return torch.full((TABULAR_FEATURES,), default, dtype=torch.float32)
    tensor = torch.as_tensor(value, dtype=torch.float32).reshape(-1)
    if tensor.shape != (TABULAR_FEATURES,):
        raise ValueError(f"expected {TABULAR_FEATURES} values, got shape {tuple(tensor.shape)}")
    return tensor.clone()


class BasicBlock(nn.Module):
    """ResNet's basic block: 3x3 conv (stride), BN, ReLU, 3x3 conv, BN, plus the shortcut (a 1x1 conv + BN
    when the stride or the width changes), ReLU. Layer names as torchvision's, so its state_dicts load."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """ResNet-18 (He et al. 2015) as torchvision's `resnet18`, written here: same layers, names and
    initialisation, so torchvision's weights load with `build_from_state_dict("resnet18", ...)`.

    conv 7x7/2 (width), BN, ReLU, max-pool 3x3/2, four stages of two BasicBlocks (width, 2x, 4x, 8x; the last
    three start with stride 2), global average pool, fc -> `num_classes` logits (not log-probabilities:
    torchvision's output; the classifier handler takes the softmax of either). 11,689,512 parameters at
    width 64 and 1000 classes. Input (N, 3, H, W) float32 normalised with ImageNet's mean and std, H = W = 224
    as trained (any size >= 32 runs).
    """

    def __init__(self, num_classes: int = 1000, width: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, padding=1)
        widths = [width, 2 * width, 4 * width, 8 * width]
        self.layer1 = nn.Sequential(BasicBlock(width, widths[0]), BasicBlock(widths[0], widths[0]))
        self.layer2 = nn.Sequential(BasicBlock(widths[0], widths[1], 2), BasicBlock(widths[1], widths[1]))
        self.layer3 = nn.Sequential(BasicBlock(widths[1], widths[2], 2), BasicBlock(widths[2], widths[2]))
        self.layer4 = nn.Sequential(BasicBlock(widths[2], widths[3], 2), BasicBlock(widths[3], widths[3]))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[3], num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images (N, 3, H, W) -> logits (N, num_classes)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class TokenBagClassifier(nn.Module):
    """A bag of tokens for text classification: token embeddings, their mean and their maximum over the text's
    tokens (padding left out), dropout, a linear layer -> log-probabilities.

    Inputs ``input_ids`` (N, L) int64 and ``attention_mask`` (N, L) (1 for tokens, 0 for padding), any L, as the
    text handler builds them; output (N, classes). Not in ``ARCHITECTURES``: it is built for a tokenizer's
    vocabulary size and takes token ids, not the float inputs of the export command.
    """

    def __init__(self, vocab_size: int, classes: int, dim: int = 64, dropout: float = 0.3) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(2 * dim, classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token ids and mask (N, L) -> log-probabilities (N, classes)."""
        tokens = self.embedding(input_ids)
        mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
        mean = (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)
        peak = tokens.masked_fill(mask == 0, -1e4).max(dim=1).values
        return F.log_softmax(self.fc(self.dropout(torch.cat([mean, peak], dim=1))), dim=1)


ARCHITECTURES: dict[str, Callable[[], nn.Module]] = {
    "mnist_cnn": MnistCNN,
    "resnet18": ResNet18,
    "tabular_mlp": TabularMLP,
}

# Per-sample input shape of each architecture (batch axis excluded).
INPUT_SHAPES: dict[str, tuple[int, ...]] = {
    "mnist_cnn": (1, 28, 28),
    "resnet18": (3, 224, 224),
    "tabular_mlp": (TABULAR_FEATURES,),
}


def create(arch: str) -> nn.Module:
    """Instantiate a freshly initialised ``arch``; raises ``UnknownArchitectureError``."""
    try:
        factory = ARCHITECTURES[arch]
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURES))
        raise UnknownArchitectureError(f"unknown architecture {arch!r}; known: {known}") from None
    return factory()


def build_from_state_dict(arch: str, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """Build ``arch`` with weights (and tabular ``mean``/``std`` buffers) from ``state_dict``.

    Returns the module in eval mode. Raises ``UnknownArchitectureError`` for an unknown name and
    ``StateDictMismatchError`` naming missing/unexpected keys or mismatched shapes.
    """
    model = create(arch)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        raise StateDictMismatchError(
            f"state_dict does not fit {arch!r}: missing keys {missing}, unexpected keys {unexpected}"
        )
    wrong_shapes = [
        f"{key}: checkpoint {tuple(state_dict[key].shape)} vs model {tuple(value.shape)}"
        for key, value in expected.items()
        if tuple(state_dict[key].shape) != tuple(value.shape)
    ]
    if wrong_shapes:
        raise StateDictMismatchError(f"state_dict does not fit {arch!r}: shape mismatch {wrong_shapes}")
    model.load_state_dict(dict(state_dict), strict=True)
    return model.eval()


class MnistConvNet(nn.Module):
    """A digit classifier of MnistCNN's serving cost (about 11 M multiply-adds per image against MnistCNN's 12 M)
    that generalises better from generated digits: three convolutions with batch norm (folded into the
    convolutions when served frozen) and two pooling stages, a small classifier.

    Input ``(N, 1, 28, 28)`` normalised as MnistCNN's; output ``(N, 10)`` log-probabilities.
    conv 1→32 3×3, conv 32→48 3×3, max-pool 2, conv 48→64 3×3, max-pool 2, fc 1600→128, dropout 0.3, fc 128→10.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
            nn.Conv2d(32, 48, 3, bias=False), nn.BatchNorm2d(48), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(48, 64, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(1600, 128), nn.ReLU(inplace=True), nn.Dropout(0.3), nn.Linear(128, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map normalised images ``(N, 1, 28, 28)`` to log-probabilities ``(N, 10)``."""
        return F.log_softmax(self.classifier(self.features(x)), dim=1)
