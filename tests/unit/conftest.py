"""Unit-test fixtures: handlers served in-process over small real models (tests/served.py), and the fake
TorchServe servers of the client tests (tests/unit/fake_torchserve.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from handlers.image import ImageClassifier
from handlers.tabular import TabularClassifier
from tests.served import MNIST_IMAGE, Served, image_model, serve, tabular_model


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


@pytest.fixture
def run_predict(stub, key_file: Path, capsys: pytest.CaptureFixture[str]):
    """`predict.main` against `stub` with `key_file`: a function `(*argv) -> (exit status, stdout, stderr)`."""
    from toolkit.cli import predict

    def run(*argv: str) -> tuple[int, str, str]:
        rc = predict.main([*argv, "--url", stub.url, "--key-file", str(key_file)])
        out, err = capsys.readouterr()
        return rc, out, err

    return run


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
