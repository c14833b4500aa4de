"""Architectures, their registry, state_dict loading and the checkpoint -> TorchScript export."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from toolkit.export import __main__ as export_cli
from toolkit.export.architectures import (
    ARCHITECTURES,
    INPUT_SHAPES,
    MnistCNN,
    ResNet18,
    StateDictMismatchError,
    TabularMLP,
    UnknownArchitectureError,
    build_from_state_dict,
)
from toolkit.export.torchscript import CheckpointError, export_checkpoint, load_torchscript, random_inputs


def test_registry_names_and_input_shapes() -> None:
    assert set(ARCHITECTURES) == {"mnist_cnn", "resnet18", "tabular_mlp"}
    assert set(INPUT_SHAPES) == set(ARCHITECTURES)
    assert isinstance(ARCHITECTURES["mnist_cnn"](), MnistCNN)
    assert isinstance(ARCHITECTURES["tabular_mlp"](), TabularMLP)
    assert isinstance(ARCHITECTURES["resnet18"](), ResNet18)


def test_resnet18_has_torchvisions_structure() -> None:
    """torchvision's resnet18: 11,689,512 parameters for 1000 classes, its 122 state_dict entries and names."""
    model = ResNet18().eval()
    assert sum(p.numel() for p in model.parameters()) == 11_689_512
    state = model.state_dict()
    assert len(state) == 122
    shapes = {"conv1.weight": (64, 3, 7, 7), "layer1.0.conv1.weight": (64, 64, 3, 3),
              "layer2.0.downsample.0.weight": (128, 64, 1, 1), "layer2.0.downsample.1.running_var": (128,),
              "layer4.1.bn2.weight": (512,), "fc.weight": (1000, 512), "fc.bias": (1000,)}
    assert {key: tuple(state[key].shape) for key in shapes} == shapes
    assert not any("downsample" in key for key in state if key.startswith(("layer1.", "layer2.1", "layer3.1")))
    with torch.no_grad():
        assert model(torch.randn(2, 3, 224, 224)).shape == (2, 1000)
        assert ResNet18(num_classes=7, width=8)(torch.randn(1, 3, 64, 96)).shape == (1, 7)


def test_mnist_cnn_shapes_and_log_probabilities() -> None:
    model = MnistCNN().eval()
    out = model(torch.randn(5, 1, 28, 28))
    assert out.shape == (5, 10)
    assert torch.allclose(out.exp().sum(dim=1), torch.ones(5), atol=1e-5)
    assert model.fc1.in_features == 9216 and model.fc2.out_features == 10


def test_tabular_mlp_standardises_with_its_buffers() -> None:
    torch.manual_seed(0)
    mean, std = torch.randn(30) * 10, torch.rand(30) * 5 + 0.5
    model = TabularMLP(mean=mean, std=std).eval()
    identity = TabularMLP().eval()
    identity.net.load_state_dict(model.net.state_dict())
    x = mean + std * torch.randn(7, 30)
    out = model(x)
    assert out.shape == (7, 2)
    assert torch.allclose(out, identity((x - mean) / std), atol=1e-6)
    state = model.state_dict()
    assert state["mean"].shape == (30,) and state["std"].shape == (30,)
    assert torch.equal(state["mean"], mean)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_build_from_state_dict_reproduces_the_model(arch: str) -> None:
    torch.manual_seed(1)
    original = ARCHITECTURES[arch]().eval()
    if arch == "tabular_mlp":
        original.mean.copy_(torch.randn(30))
        original.std.copy_(torch.rand(30) + 0.5)
    rebuilt = build_from_state_dict(arch, original.state_dict())
    assert not rebuilt.training
    x = random_inputs(arch, original, 4)
    assert torch.equal(rebuilt(x), original(x))


def test_unknown_architecture_is_named() -> None:
    with pytest.raises(UnknownArchitectureError, match="'resnet'.*mnist_cnn, resnet18, tabular_mlp"):
        build_from_state_dict("resnet", {})


def test_mismatched_keys_are_named() -> None:
    state = MnistCNN().state_dict()
    del state["fc2.bias"]
    state["extra.weight"] = torch.zeros(1)
    expected = r"missing keys \['fc2.bias'\].*unexpected keys \['extra.weight'\]"
    with pytest.raises(StateDictMismatchError, match=expected):
        build_from_state_dict("mnist_cnn", state)


def test_mismatched_shapes_are_named() -> None:
    state = TabularMLP().state_dict()
    state["mean"] = torch.zeros(29)
    with pytest.raises(StateDictMismatchError, match=r"mean: checkpoint \(29,\) vs model \(30,\)"):
        build_from_state_dict("tabular_mlp", state)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_export_checkpoint_round_trip(arch: str, tmp_path: Path) -> None:
    torch.manual_seed(2)
    model = ARCHITECTURES[arch]().eval()
    torch.save(model.state_dict(), tmp_path / "ckpt.pth")
    report = export_checkpoint(arch, tmp_path / "ckpt.pth", tmp_path / "model.pt")
    assert report.torchscript_max_abs_diff == 0.0 and report.onnx_path is None
    x = random_inputs(arch, model, 6, seed=9)
    assert torch.equal(load_torchscript(tmp_path / "model.pt")(x), model(x))


def test_export_checkpoint_refuses_a_pickled_module(tmp_path: Path) -> None:
    torch.save(TabularMLP(), tmp_path / "module.pth")
    with pytest.raises(CheckpointError, match="state_dict"):
        export_checkpoint("tabular_mlp", tmp_path / "module.pth", tmp_path / "model.pt")
    assert not (tmp_path / "model.pt").exists()


def test_cli_exports_a_checkpoint(tmp_path: Path, cli_main: Callable[[list[str]], int],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    ckpt, out = tmp_path / "ckpt.pth", tmp_path / "model.pt"
    model = TabularMLP(mean=torch.randn(30), std=torch.rand(30) + 0.5).eval()
    torch.save(model.state_dict(), ckpt)
    assert cli_main(["--arch", "tabular_mlp", "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    x = random_inputs("tabular_mlp", model, 3)
    assert torch.equal(load_torchscript(out)(x), model(x))


@pytest.fixture(scope="module")
def cli_main() -> Callable[[list[str]], int]:
    """``main`` of ``python -m toolkit.export``, in-process."""
    return export_cli.main


@pytest.mark.parametrize(
    ("arch", "drop", "extra", "message"),
    [
        ("nope", None, None, "unknown architecture 'nope'; known: mnist_cnn, resnet18, tabular_mlp"),
        ("tabular_mlp", None, "surplus", "unexpected keys ['surplus']"),
        ("mnist_cnn", "fc1.weight", None, "missing keys ['fc1.weight']"),
    ],
)
def test_cli_errors_are_clear(arch: str, drop: str | None, extra: str | None, message: str, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str], cli_main: Callable[[list[str]], int]) -> None:
    state = (MnistCNN() if arch == "mnist_cnn" else TabularMLP()).state_dict()
    if drop:
        del state[drop]
    if extra:
        state[extra] = torch.zeros(2)
    torch.save(state, tmp_path / "ckpt.pth")
    code = cli_main(["--arch", arch, "--checkpoint", str(tmp_path / "ckpt.pth"), "--out", str(tmp_path / "m.pt")])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "m.pt").exists()
