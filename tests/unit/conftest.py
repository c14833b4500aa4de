"""Unit-test fixtures: handlers loaded over small real TorchScript models by the in-process TorchServe worker
(toolkit.archive.worker: TorchServe's own loader, Context and request parsing), as every engine runs them."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from handlers.backends.torchscript import jit_deprecation_ignored
from handlers.config import parse_model_yaml
from handlers.image import ImageClassifier
from handlers.tabular import TabularClassifier
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


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """Handlers set torch's thread count for their worker process; restore it for the next test."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def make_image_handler(tmp_path) -> Callable[..., Served]:
    """An image handler (`handler_class`, an ImageClassifier by default) with `handler:` settings overridden."""

    def build(handler_class: type = ImageClassifier, **handler_overrides) -> Served:
        handler = {"name": "image_classifier", "max_inputs_per_request": 8, "image": MNIST_IMAGE,
                   **handler_overrides}
        config = {"batchSize": 8, "maxWorkers": 1, "handler": handler}
        return serve(tmp_path, handler_class, image_model(), config, {str(i): f"digit {i}" for i in range(10)})

    return build


@pytest.fixture
def image_handler(make_image_handler) -> Served:
    return make_image_handler()


@pytest.fixture
def tabular_handler(tmp_path) -> Served:
    config = {"batchSize": 8, "maxWorkers": 2,
              "handler": {"name": "tabular_classifier", "max_inputs_per_request": 16, "tabular": {"num_features": 30}}}
    return serve(tmp_path, TabularClassifier, tabular_model(), config, {"0": "malignant", "1": "benign"})


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


# ---- clients' fixtures: a TorchServe key file, a dead port, the fake TorchServe REST and gRPC servers -----
# (tests/unit/fake_torchserve.py holds the fake and the keys; imported here lazily, so that handler tests
# never import grpc.)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    """A key_file.json as TorchServe writes it, with fake_torchserve's INFERENCE_KEY and MANAGEMENT_KEY."""
    from tests.unit.fake_torchserve import KEY_FILE

    path = tmp_path / "key_file.json"
    path.write_text(json.dumps(KEY_FILE, indent=2))
    return path


@pytest.fixture
def free_port() -> int:
    """A loopback port with nothing listening on it (bound once, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def stub(request: pytest.FixtureRequest):
    """The fake TorchServe REST server (`fake_torchserve.StubTorchServe`), serving, with no routes yet."""
    from tests.unit.fake_torchserve import StubTorchServe

    server = StubTorchServe()
    server.thread.start()
    request.addfinalizer(server.stop)
    return server


@pytest.fixture(scope="session")
def fake_grpc(request: pytest.FixtureRequest):
    """The fake TorchServe gRPC server (`fake_torchserve.FakeGrpc`), one for the session; reset per test by
    `fake_management`."""
    from tests.unit.fake_torchserve import FakeGrpc

    fake = FakeGrpc.start()
    request.addfinalizer(fake.stop)
    return fake


@pytest.fixture
def fake_management(fake_grpc):
    """The fake's management service (`fake_torchserve.FakeManagement`), reset: no request seen yet, the one
    model "m", archives without a worker range."""
    fake_grpc.management.reset()
    return fake_grpc.management
