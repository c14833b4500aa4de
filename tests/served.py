"""Handlers served in-process for the unit and integration tiers: small real TorchScript models laid out as an
extracted archive and loaded by the in-process TorchServe worker (toolkit.archive.worker: TorchServe's own
loader, Context and request parsing), as every engine runs them; and the test images they are sent."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image

from handlers.backends.torchscript import jit_deprecation_ignored
from handlers.config import parse_model_yaml
from toolkit.archive.staging import entry_file_name, entry_source
from toolkit.archive.worker import Answer, ArchiveWorker, Request

MNIST_IMAGE = {"width": 28, "height": 28, "channels": 1, "mean": [0.1307], "std": [0.3081],
               "background": "auto", "fit": "digit_box"}  # mnist.yaml's image section


def save_scripted(module: torch.nn.Module, path: Path) -> Path:
    torch.manual_seed(0)
    for parameter in module.parameters():
        torch.nn.init.normal_(parameter, std=0.05)
    with jit_deprecation_ignored():  # TorchScript, the legacy format, on purpose
        torch.jit.script(module.eval()).save(str(path))
    return path


def image_model() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10), torch.nn.LogSoftmax(dim=1))


def tabular_model() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(30, 2), torch.nn.LogSoftmax(dim=1))


def as_request(body: object) -> Request:
    """A test body as a client sends it: parsed JSON as `application/json` (TorchServe parses it back), text as
    `text/plain` (handed over as str), bytes as they are; a Request unchanged."""
    if isinstance(body, Request):
        return body
    if isinstance(body, str):
        return Request(body.encode(), "text/plain")
    if isinstance(body, bytes | bytearray):
        return Request(bytes(body))
    return Request(json.dumps(body).encode(), "application/json")


class Served:
    """An archive's folder loaded by the in-process worker, with helpers to send one batch through it."""

    def __init__(self, worker: ArchiveWorker) -> None:
        self.worker = worker

    @property
    def handler(self):
        """The handler instance TorchServe's loader built."""
        return self.worker.entry_point.__self__

    @property
    def context(self):
        return self.worker.context

    def batch(self, *bodies: object) -> list[Answer]:
        return self.worker.handle([as_request(body) for body in bodies])

    def one(self, body: object) -> Answer:
        return self.batch(body)[0]


def lay_out(model_dir: Path, handler_cls: type, config: dict, model_file: str = "model.pt") -> Path:
    """`model_dir` as an extracted archive of model "test": manifest, model-config.yaml and an entry file whose
    one class extends `handler_cls` (a module-level class), beside the model file and labels already there."""
    parse_model_yaml(config, "test config")  # the fixture's config must itself be valid
    entry = entry_file_name("test")
    (model_dir / entry).write_text(entry_source("test", handler_cls.__module__, handler_cls.__qualname__))
    (model_dir / "model-config.yaml").write_text(yaml.safe_dump(config))
    manifest = {"model": {"modelName": "test", "modelVersion": "1.0", "serializedFile": model_file,
                          "handler": entry, "configFile": "model-config.yaml"}}
    (model_dir / "MAR-INF").mkdir(exist_ok=True)
    (model_dir / "MAR-INF" / "MANIFEST.json").write_text(json.dumps(manifest))
    return model_dir


def serve(tmp_path: Path, handler_cls, model: torch.nn.Module, config: dict, labels: dict) -> Served:
    save_scripted(model, tmp_path / "model.pt")
    (tmp_path / "index_to_name.json").write_text(json.dumps(labels))
    return Served(ArchiveWorker(lay_out(tmp_path, handler_cls, config)))


def digit_pixels(seed: int = 0) -> np.ndarray:
    """A 28x28 uint8 white-on-black blob in MNIST layout (content inside the central 20x20 box)."""
    rng = np.random.default_rng(seed)
    pixels = np.zeros((28, 28), dtype=np.uint8)
    pixels[6:22, 10:18] = rng.integers(120, 256, size=(16, 8))
    return pixels


def png_bytes(pixels: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(pixels)
    (image.convert(mode) if mode else image).save(buffer, format="PNG")
    return buffer.getvalue()
