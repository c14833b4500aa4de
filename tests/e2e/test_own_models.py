"""Models of your own on a real TorchServe: a small ResNet with BatchNorm and a dict-output model that TorchScript
refuses, each exported by `toolkit.export` as an AOTInductor package and as an ExportedProgram, archived by
`toolkit.archive.build` (preflight on) and served; plus the ResNet eager from its source and checkpoint. Every
served probability equals the eager module's within 1e-4, and the dict model's extra output is in each answer.
The server runs in its own temp dir on free ports, one worker per model; exports are made once
(tests/own_exports.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.e2e._helpers import CONFIG, START_TIMEOUT_S
from tests.own_exports import (
    client_inputs,
    eager_archive_yaml,
    eager_outputs,
    eager_probabilities,
    exported,
    png,
    write_yaml,
)
from toolkit.archive import build
from toolkit.client.rest import InferenceClient
from toolkit.process import free_ports
from toolkit.server.local import LocalServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EXPORTS = [("resnet", "aoti"), ("resnet", "exported"), ("two_heads", "aoti"), ("two_heads", "exported")]
PROBABILITY_ATOL = 1e-4


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """A TorchServe serving every archive of EXPORTS (`<name>_<format>`) and `resnet_eager`."""
    root = tmp_path_factory.mktemp("own_models")
    store = root / "store"
    yamls = [write_yaml(f"{name}_{fmt}", name, exported(name, fmt), root) for name, fmt in EXPORTS]
    yamls.append(eager_archive_yaml("resnet_eager", "resnet", root))
    archives = [build(path, store).name for path in yamls]
    server = LocalServer(root / "run", CONFIG, store, archives, ports=free_ports())
    with server.running(START_TIMEOUT_S):
        yield server


@pytest.fixture(scope="module")
def own_server(running: LocalServer) -> Iterator[InferenceClient]:
    with running.inference_client() as client:
        yield client


def predict(client: InferenceClient, model: str, body: bytes, content_type: str) -> object:
    status, answer = client.predict(model, body, content_type)
    assert status == 200, answer
    return answer


@pytest.mark.parametrize("model", ["resnet_aoti", "resnet_exported", "resnet_eager"])
def test_served_resnet_probabilities_equal_the_eager_modules(own_server, model):
    images = client_inputs("resnet", 5, seed=11)
    expected = eager_probabilities("resnet", images)
    for image, want in zip(images, expected, strict=True):  # PNG bytes, one image per request
        answer = predict(own_server, model, png(image), "image/png")
        np.testing.assert_allclose(answer["probabilities"], want, atol=PROBABILITY_ATOL)
        assert answer["predicted_label"] == int(want.argmax()) and answer["label"] == f"class {want.argmax()}"
    body = json.dumps({"inputs": [image.tolist() for image in images]}).encode()  # all five in one request
    answers = predict(own_server, model, body, "application/json")
    np.testing.assert_allclose([a["probabilities"] for a in answers], expected, atol=PROBABILITY_ATOL)


@pytest.mark.parametrize("model", ["two_heads_aoti", "two_heads_exported"])
def test_served_dict_output_model_answers_from_its_logits_with_its_embedding(own_server, model):
    rows = client_inputs("two_heads", 7, seed=12)
    body = json.dumps({"inputs": rows.tolist(), "return_probabilities": True}).encode()
    answer = predict(own_server, model, body, "application/json")
    expected = eager_probabilities("two_heads", rows)
    np.testing.assert_allclose(answer["probabilities"], expected, atol=PROBABILITY_ATOL)
    assert answer["predictions"] == expected.argmax(axis=1).tolist()
    assert answer["labels"] == [("negative", "positive")[i] for i in answer["predictions"]]
    np.testing.assert_allclose(answer["embedding"], eager_outputs("two_heads", rows)["embedding"].numpy(), atol=1e-5)


def test_each_archive_logs_the_backend_that_serves_it(running):
    text = "\n".join(path.read_text(errors="replace") for path in Path(running.log_dir).rglob("*.log"))
    for model, backend in [("resnet_aoti", "aotinductor"), ("resnet_exported", "exported"), ("resnet_eager", "eager"),
                           ("two_heads_aoti", "aotinductor")]:
        assert f"{model} ready: device=cpu threads=1 backend={backend}" in text, model
