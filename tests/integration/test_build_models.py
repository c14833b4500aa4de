"""The built example models (`make models` -> build/models/<name>/), opened and re-checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from examples.demo_models.digits import normalize
from tests.paths import BUILD, require_built
from toolkit.export.architectures import MnistCNN
from toolkit.export.torchscript import load_torchscript, predict

THRESHOLDS = {"mnist": 0.97, "tabular": 0.93}
LABELS = {"mnist": {str(i): str(i) for i in range(10)}, "tabular": {"0": "malignant", "1": "benign"}}


def model_dir(name: str) -> Path:
    return require_built(BUILD / name / f"{name}.pt", "make models").parent


def serving_input(name: str, x: np.ndarray) -> torch.Tensor:
    """The model input the handlers build from what the server receives."""
    return torch.from_numpy(normalize(x) if name == "mnist" else x.astype(np.float32))


@pytest.mark.parametrize("name", sorted(THRESHOLDS))
def test_heldout_predictions_metrics_and_labels(name: str) -> None:
    folder = model_dir(name)
    data = np.load(folder / "heldout.npz")
    x, y, pred = data["x"], data["y"], data["pred"]
    assert x.dtype == (np.uint8 if name == "mnist" else np.float64)
    assert x.shape[1:] == ((28, 28) if name == "mnist" else (30,))
    assert y.dtype == np.int64 and pred.dtype == np.int64 and len(x) == len(y) == len(pred)
    scripted = load_torchscript(folder / f"{name}.pt")
    assert np.array_equal(predict(scripted, serving_input(name, x)).argmax(1).numpy(), pred)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["accuracy"]["heldout"] == pytest.approx(float((pred == y).mean()))
    assert metrics["accuracy"]["heldout"] >= THRESHOLDS[name]
    assert metrics["counts"]["heldout"] == len(y)
    assert json.loads((folder / "index_to_name.json").read_text()) == LABELS[name]


@pytest.mark.parametrize("name", sorted(THRESHOLDS))
def test_onnx_matches_torchscript(name: str) -> None:
    folder = model_dir(name)
    x = serving_input(name, np.load(folder / "heldout.npz")["x"])
    session = ort.InferenceSession(str(folder / f"{name}.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    assert session.get_inputs()[0].shape[0] == "batch"
    onnx_out = session.run(["output"], {"input": x.numpy()})[0]
    reference = predict(load_torchscript(folder / f"{name}.pt"), x).numpy()
    assert np.abs(onnx_out - reference).max() <= 1e-4


def test_mnist_samples_are_heldout_images_classified_as_expected() -> None:
    folder = model_dir("mnist")
    expected = json.loads((folder / "samples" / "expected.json").read_text())
    assert expected == {f"{d}.png": d for d in range(10)}
    heldout = np.load(folder / "heldout.npz")["x"]
    images = []
    for file_name in expected:
        with Image.open(folder / "samples" / file_name) as img:
            assert img.mode == "L" and img.size == (28, 28)
            images.append(np.asarray(img))
    batch = np.stack(images)
    assert all((heldout == img).all(axis=(1, 2)).any() for img in batch)
    pred = predict(load_torchscript(folder / "mnist.pt"), serving_input("mnist", batch)).argmax(1)
    assert pred.tolist() == list(expected.values())


def test_tabular_samples_cover_both_classes_and_are_classified_as_expected() -> None:
    folder = model_dir("tabular")
    expected = json.loads((folder / "samples" / "expected.json").read_text())
    assert sorted(expected) == [f"sample_{k}.json" for k in range(4)]
    assert {label for labels in expected.values() for label in labels} == {0, 1}
    heldout = np.load(folder / "heldout.npz")["x"]
    scripted = load_torchscript(folder / "tabular.pt")
    for file_name, labels in expected.items():
        rows = np.asarray(json.loads((folder / "samples" / file_name).read_text())["inputs"], dtype=np.float64)
        assert rows.shape == (1, 30)
        assert (heldout == rows[0]).all(axis=1).any()
        assert predict(scripted, serving_input("tabular", rows)).argmax(1).tolist() == labels


@pytest.mark.slow
def test_export_cli_writes_checked_onnx(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = MnistCNN().eval()
    torch.save(model.state_dict(), tmp_path / "ckpt.pth")
    args = ["--arch", "mnist_cnn", "--checkpoint", str(tmp_path / "ckpt.pth"), "--out", str(tmp_path / "m.pt"),
            "--onnx", str(tmp_path / "m.onnx")]
    result = subprocess.run([sys.executable, "-m", "toolkit.export", *args],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    x = torch.randn(5, 1, 28, 28)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    onnx_out = session.run(["output"], {"input": x.numpy()})[0]
    assert np.abs(onnx_out - model(x).detach().numpy()).max() <= 1e-4
