"""The built resnet18 and fortunes demo models (`make models` -> build/models/<name>/), re-checked independently:
resnet18's sample predictions through a torchvision-order preprocessing written here with PIL, fortunes'
held-out predictions through the tokenizer file it ships."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from tokenizers import Tokenizer

from tests.paths import BUILD, require_built
from toolkit.export.torchscript import load_torchscript

MEAN, STD = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def imagenet_input(path) -> torch.Tensor:
    """Resize(256) + CenterCrop(224) + ToTensor + Normalize(ImageNet), as torchvision does it on a PIL image."""
    image = Image.open(path).convert("RGB")
    w, h = image.size
    scale = 256 / min(w, h)
    size = (256, int(256 * h / w)) if w <= h else (int(256 * w / h), 256)
    assert abs(size[0] - w * scale) < 1 and abs(size[1] - h * scale) < 1
    image = image.resize(size, Image.BILINEAR)
    left, top = int(round((size[0] - 224) / 2.0)), int(round((size[1] - 224) / 2.0))
    pixels = np.asarray(image.crop((left, top, left + 224, top + 224)), dtype=np.float32) / 255
    return ((torch.from_numpy(pixels).permute(2, 0, 1) - MEAN) / STD)[None]


def test_resnet18_is_resnet18_and_its_samples_are_predicted_as_expected():
    folder = require_built(BUILD / "resnet18" / "resnet18.pt", "make models").parent
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["parameters"] == 11_689_512 and "random" in metrics["weights"]
    expected = json.loads((folder / "samples" / "expected.json").read_text())
    assert {name.rsplit(".", 1)[1] for name in expected} == {"png", "jpg"}  # PNG and JPEG photos
    scripted = load_torchscript(folder / "resnet18.pt")
    with torch.inference_mode():
        for name, label in expected.items():
            assert int(scripted(imagenet_input(folder / "samples" / name)).argmax()) == label, name


def test_fortunes_heldout_accuracy_through_its_tokenizer_file():
    folder = require_built(BUILD / "fortunes" / "fortunes.pt", "make models").parent
    heldout = json.loads((folder / "heldout.json").read_text())
    metrics = json.loads((folder / "metrics.json").read_text())
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_truncation(metrics["max_length"])
    scripted = load_torchscript(folder / "fortunes.pt")
    predictions = []
    with torch.inference_mode():
        for text in heldout["text"]:
            ids = torch.tensor([tokenizer.encode(text).ids])
            predictions.append(int(scripted(ids, torch.ones_like(ids)).argmax()))
    assert predictions == heldout["pred"]
    accuracy = float(np.mean(np.asarray(predictions) == np.asarray(heldout["y"])))
    assert accuracy == pytest.approx(metrics["accuracy"]["heldout"])
    assert accuracy >= metrics["thresholds"]["heldout"]
    assert metrics["counts"]["heldout"] == len(heldout["y"]) >= 400
    labels = json.loads((folder / "index_to_name.json").read_text())
    expected = json.loads((folder / "samples" / "expected.json").read_text())
    assert expected == {f"{labels[str(i)]}.txt": i for i in range(len(labels))}
