"""MnistConvNet: the mnist demo's classifier, at MnistCNN's serving cost (counted in multiply-adds, not timed)."""

from __future__ import annotations

import torch
from torch import nn

from handlers.backends import optimize_torchscript
from toolkit.export.architectures import MnistCNN, MnistConvNet
from toolkit.export.torchscript import to_torchscript


def multiply_adds(model: nn.Module, shape: tuple[int, ...]) -> int:
    """Multiply-adds of the convolutions and linear layers of one forward pass of one input of ``shape``."""
    total = 0

    def count(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            total += output.numel() * per_output
        elif isinstance(module, nn.Linear):
            total += output.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    with torch.inference_mode():
        model.eval()(torch.zeros(1, *shape))
    for hook in hooks:
        hook.remove()
    return total


def test_convnet_costs_no_more_than_mnist_cnn() -> None:
    cnn, convnet = multiply_adds(MnistCNN(), (1, 28, 28)), multiply_adds(MnistConvNet(), (1, 28, 28))
    assert cnn == 26 * 26 * 32 * 9 + 24 * 24 * 64 * 32 * 9 + 9216 * 128 + 128 * 10  # the count itself is right
    assert 0.85 * cnn <= convnet <= cnn


def test_convnet_gives_log_probabilities_and_serves_frozen() -> None:
    torch.manual_seed(0)
    model = MnistConvNet().eval()
    x = torch.randn(5, 1, 28, 28)
    with torch.inference_mode():
        out = model(x)
        served = optimize_torchscript(to_torchscript(model))(x)
    assert out.shape == (5, 10)
    assert torch.allclose(out.exp().sum(1), torch.ones(5), atol=1e-5)
    assert torch.allclose(served, out, atol=1e-4)  # batch norm folded into the convolutions
