"""The test models of `tests/own_models.py` with trained-looking weights, their exports (made once), and what
archiving and serving them needs: a model YAML, sample requests with their expected answers, and the eager
module's outputs on the inputs the handler builds from those requests (computed here, independently of it).

`exported(name, fmt)` runs `python -m toolkit.export` (in-process, under pytest's warning filters) once per model,
format and content of `tests/own_models.py` and of this file: the files go to `build/test-cache/exports/<hash>/`,
so an AOTInductor compile (15-40 s on 2 cores) is paid once, not per test or per session.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image
from torch import nn

from tests import own_models
from tests.paths import BUILD
from toolkit.export.__main__ import main as export_main

MODELS_FILE = Path(own_models.__file__)
CACHE = BUILD.parent / "test-cache" / "exports"


@dataclass(frozen=True)
class OwnModel:
    """A test model: its factory in tests/own_models.py, its example input for toolkit.export, its labels."""

    factory: str
    example_input: str
    labels: tuple[str, ...]

    def build(self) -> nn.Module:
        return getattr(own_models, self.factory)()

    @property
    def spec(self) -> str:
        """`--model` of toolkit.export."""
        return f"{MODELS_FILE}:{self.factory}"


OWN_MODELS = {
    "resnet": OwnModel("build_resnet", "3,32,32", tuple(f"class {i}" for i in range(10))),
    "two_heads": OwnModel("build_two_heads", "30", ("negative", "positive")),
    "scored": OwnModel("build_scored_classifier", "30", tuple(f"class {i}" for i in range(10))),
}


def trained(name: str) -> nn.Module:
    """The model `name` with seeded weights and BatchNorm statistics unlike a fresh module's, in eval mode."""
    model = OWN_MODELS[name].build()
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(0.3 * torch.randn(tensor.shape, generator=generator))
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(0.5 * torch.randn(module.num_features, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(module.num_features, generator=generator))
    return model.eval()


def checkpoint(name: str, folder: Path) -> Path:
    """`trained(name)`'s state_dict as a training checkpoint would hold it: under "state_dict"."""
    path = folder / f"{name}.ckpt"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": trained(name).state_dict(), "epoch": 3}, path)
    return path


def cache_dir(*parts: str) -> Path:
    """The cache folder of an export: keyed by the models' and this file's content, torch's version, `parts`."""
    digest = hashlib.sha256(MODELS_FILE.read_bytes() + Path(__file__).read_bytes() + torch.__version__.encode()
                            + "|".join(parts).encode())
    return CACHE / digest.hexdigest()[:16]


def exported(name: str, fmt: str, suffix: str = ".pt2") -> Path:
    """The model `name` exported by `python -m toolkit.export --format fmt` from its checkpoint (done once per
    content of this file; later calls return the cached file). An ONNX export keeps its `.data` beside it."""
    folder = cache_dir(name, fmt, suffix)
    out = folder / f"{name}_{fmt}{suffix}"
    if out.is_file():
        return out
    shutil.rmtree(folder, ignore_errors=True)
    model = OWN_MODELS[name]
    code = export_main(["--model", model.spec, "--checkpoint", str(checkpoint(name, folder)),
                        "--example-input", model.example_input, "--format", fmt, "--out", str(out)])
    assert code == 0, f"toolkit.export of {name} as {fmt} failed"
    return out


# --- archiving and serving them -------------------------------------------------------------------------------

IMAGE = {"width": 32, "height": 32, "channels": 3, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
HANDLERS = {
    "resnet": {"name": "image_classifier", "image": IMAGE},
    "two_heads": {"name": "tabular_classifier", "tabular": {"num_features": 30}, "output": "logits",
                  "extra_outputs": ["embedding"]},
    "scored": {"name": "tabular_classifier", "tabular": {"num_features": 30}},
}
MAIN_OUTPUT = {"resnet": "output", "two_heads": "logits", "scored": "1"}


def client_inputs(name: str, count: int, seed: int) -> np.ndarray:
    """What a client sends: RGB images (count, 32, 32, 3) uint8 for the ResNet, else rows (count, 30) float64."""
    rng = np.random.default_rng(seed)
    if name == "resnet":
        return rng.integers(0, 256, size=(count, 32, 32, 3), dtype=np.uint8)
    return rng.normal(size=(count, 30))


def model_input(name: str, data: np.ndarray) -> torch.Tensor:
    """The model input for `data`, as the handler's contract defines it: images (x / 255 - mean) / std in
    (n, C, H, W), rows as float32."""
    if name == "resnet":
        scaled = (data.astype(np.float64) / 255.0 - np.array(IMAGE["mean"])) / np.array(IMAGE["std"])
        return torch.from_numpy(scaled.transpose(0, 3, 1, 2).astype(np.float32))
    return torch.from_numpy(data.astype(np.float32))


def eager_outputs(name: str, data: np.ndarray) -> dict[str, torch.Tensor]:
    """The eager module's outputs on `data`, by the names the handlers give them."""
    with torch.inference_mode():
        raw = trained(name)(model_input(name, data))
    if isinstance(raw, torch.Tensor):
        return {"output": raw}
    return dict(raw) if isinstance(raw, dict) else {str(i): value for i, value in enumerate(raw)}


def eager_probabilities(name: str, data: np.ndarray) -> np.ndarray:
    """Softmax of the output the classifier reads, (n, classes)."""
    return torch.softmax(eager_outputs(name, data)[MAIN_OUTPUT[name]].double(), dim=1).numpy()


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image, mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def write_samples(name: str, folder: Path, count: int = 4) -> Path:
    """`count` sample requests (PNG images or one-row JSON bodies) and expected.json with the eager predictions."""
    folder.mkdir(parents=True, exist_ok=True)
    data = client_inputs(name, count, seed=100)
    predicted = eager_probabilities(name, data).argmax(axis=1).tolist()
    expected = {}
    for index, item in enumerate(data):
        if name == "resnet":
            (folder / f"{index}.png").write_bytes(png(item))
            expected[f"{index}.png"] = predicted[index]
        else:
            (folder / f"{index}.json").write_text(json.dumps({"inputs": [item.tolist()]}))
            expected[f"{index}.json"] = [predicted[index]]
    (folder / "expected.json").write_text(json.dumps(expected))
    return folder


def write_yaml(archive_name: str, name: str, model_file: Path, work: Path, handler: dict | None = None,
               archive: dict | None = None) -> Path:
    """`<work>/<archive_name>.yaml` serving `model_file` with the handler of model `name` (keys `handler`
    replaced), samples written beside it, labels beside the model file (where the archive tool reads them)."""
    labels = OWN_MODELS[name].labels
    (model_file.parent / "index_to_name.json").write_text(json.dumps({str(i): v for i, v in enumerate(labels)}))
    settings = {"model_file": str(model_file),
                "samples": str(write_samples(name, work / f"{archive_name}-samples")), **(archive or {})}
    if settings.get("no_samples"):
        del settings["samples"]
    config = {"minWorkers": 1, "maxWorkers": 1, "batchSize": 8, "maxBatchDelay": 5,
              "handler": {**HANDLERS[name], "threads": 1, **(handler or {})}, "archive": settings}
    path = work / f"{archive_name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def eager_archive_yaml(archive_name: str, name: str, work: Path, handler: dict | None = None) -> Path:
    """A YAML serving model `name` eagerly: its checkpoint as model file, tests/own_models.py as its source."""
    folder = work / f"{archive_name}-model"
    return write_yaml(archive_name, name, checkpoint(name, folder), work,
                      {"model_factory": OWN_MODELS[name].factory, **(handler or {})},
                      {"model_source": str(MODELS_FILE)})
