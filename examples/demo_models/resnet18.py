"""The resnet18 demo model: torchvision's ResNet-18 architecture (``toolkit.export.architectures.ResNet18``) at
224x224 RGB, served with ImageNet's preprocessing (``Resize(256)`` + ``CenterCrop(224)`` + ImageNet mean/std:
``config/models/resnet18.yaml``).

Its weights are random (torchvision's initialisation, fixed seed): no labelled photo collection ships in a
package here, so it predicts no real classes (its labels are the class indices). Only the BatchNorm statistics
come from data: scikit-image's sample photos, through the serving preprocessing, so that every layer sees
inputs of unit scale and the outputs differ from photo to photo. It is the compute-heavy example: served
images/s against its raw forward (``python -m toolkit.bench.photos``, part of ``make bench``).

Writes ``resnet18.pt`` (TorchScript, checked against eager), ``resnet18.onnx`` (checked against TorchScript),
``metrics.json`` and ``samples/`` (photos as PNG and JPEG, with the class each is expected to get).
"""

from __future__ import annotations

import io
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from examples.demo_models.training import export_and_check, require, write_json
from handlers.config import ImageInput
from handlers.imaging import fit, to_tensor
from toolkit.export.architectures import ResNet18

# handler.image of config/models/resnet18.yaml: ImageNet's preprocessing (a unit test holds them equal).
RESNET_INPUT = ImageInput(width=224, height=224, channels=3, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225],
                          fit="center_crop", resize=256)
CALIBRATION_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field",
                      "retina")
# Sample files of scikit-image's data folder: the preflight sends them as a client would (PNG and JPEG).
SAMPLE_FILES = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "hubble_deep_field.jpg")
MIN_MARGIN = 1e-3  # a sample's two best logits must differ by this much to be checked against expected.json


def photos() -> dict[str, np.ndarray]:
    """scikit-image's colour sample photos (H, W, 3) uint8, by name (shipped in its wheel)."""
    import skimage.data

    return {name: getattr(skimage.data, name)() for name in CALIBRATION_PHOTOS}


def model_inputs(images: list[np.ndarray]) -> torch.Tensor:
    """Photos -> (n, 3, 224, 224) model inputs, through the serving preprocessing."""
    return to_tensor([fit(image, RESNET_INPUT).pixels for image in images], RESNET_INPUT)


def calibrate_batchnorm(model: ResNet18, x: torch.Tensor) -> None:
    """Set every BatchNorm's running mean and variance to the statistics of `x` (one forward, no gradients)."""
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average: exactly this batch's statistics
    model.train()
    with torch.no_grad():
        model(x)
    for norm in norms:
        norm.momentum = 0.1
    model.eval()


def calibration_set(found: dict[str, np.ndarray]) -> torch.Tensor:
    """Each photo and its mirror image, centre-cropped as served and stretched whole: 4 inputs per photo."""
    images = [*found.values(), *(image[:, ::-1] for image in found.values())]
    stretched = ImageInput(**{**RESNET_INPUT.model_dump(exclude_none=True), "fit": "stretch", "resize": None})
    whole = to_tensor([fit(np.ascontiguousarray(image), stretched).pixels for image in images], stretched)
    return torch.cat([model_inputs([np.ascontiguousarray(image) for image in images]), whole])


def build(out_dir: Path, seed: int, log: Callable[[str], None]) -> dict:
    """Build the resnet18 model directory; returns its metrics; raises ``BuildError``."""
    torch.manual_seed(seed)
    start = time.perf_counter()
    model = ResNet18()
    found = photos()
    require(len(found) >= 4, f"scikit-image ships too few sample photos here: {sorted(found)}")
    x_calibration = calibration_set(found)
    log(f"random weights (seed {seed}); BatchNorm statistics from {len(x_calibration)} views of "
        f"{len(found)} scikit-image photos")
    calibrate_batchnorm(model, x_calibration)
    seconds = time.perf_counter() - start
    x_check = model_inputs(list(found.values()))
    scripted, checks = export_and_check(model, x_check, out_dir, "resnet18", log)
    expected = write_samples(out_dir / "samples", scripted, log)
    metrics = {
        "model": "resnet18", "arch": "resnet18", "seed": seed, "torch_version": torch.__version__,
        "weights": "random (torchvision's initialisation); BatchNorm statistics from scikit-image's sample photos",
        "parameters": sum(p.numel() for p in model.parameters()), "train_seconds": round(seconds, 2),
        "calibration_photos": sorted(found), "accuracy": {}, "checks": checks,
        "samples_checked": sorted(expected),
    }
    write_json(out_dir / "metrics.json", metrics)
    return metrics


def write_samples(samples_dir: Path, scripted: torch.jit.ScriptModule, log: Callable[[str], None]) -> dict:
    """Copy scikit-image's sample photo files (PNG and JPEG) to `samples_dir`, with `expected.json` holding the
    class each gets through the serving preprocessing (decoded by PIL, as the handler does), for those whose
    two best logits differ by at least MIN_MARGIN (the served forward may differ from eager by ~1e-5)."""
    import skimage.data
    from PIL import Image

    from handlers.imaging import image_pixels

    samples_dir.mkdir(parents=True, exist_ok=True)
    data_dir = Path(skimage.data.__file__).parent
    expected = {}
    for name in SAMPLE_FILES:
        source = data_dir / name
        require(source.is_file(), f"scikit-image's sample photo {source} is missing")
        shutil.copy2(source, samples_dir / name)
        pixels = image_pixels(Image.open(io.BytesIO(source.read_bytes())), 3)
        with torch.inference_mode():
            logits = scripted(model_inputs([pixels]))[0]
        top2 = torch.topk(logits, 2).values
        if float(top2[0] - top2[1]) >= MIN_MARGIN:
            expected[name] = int(logits.argmax())
    log(f"samples: {len(SAMPLE_FILES)} photos, {len(expected)} with a clear prediction in expected.json")
    write_json(samples_dir / "expected.json", expected)
    return expected
