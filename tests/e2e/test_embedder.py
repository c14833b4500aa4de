"""The embedder on a real TorchServe 0.12, over images and over texts, with models of the tests' own archived in
a temp store by the archive tool (toolkit.archive.build, preflight included): the eager model's vectors (within
1e-4) for PNGs, JSON lists and texts, L2-normalised as the YAML says, over REST and the OIP route (FP32)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
import torch
import yaml

from tests.e2e._helpers import CONFIG, START_TIMEOUT_S
from tests.served import digit_pixels, png_bytes, save_scripted
from tests.unit.test_embedding_handler import (
    DIM,
    IMAGE,
    MAX_LENGTH,
    MeanTokens,
    PixelEmbedding,
    pixel_input,
    token_input,
)
from tests.unit.text_models import train_tokenizer
from toolkit.archive import build
from toolkit.client.auth import auth_header
from toolkit.process import free_ports
from toolkit.server.local import LocalServer

TEXTS = ["the cat sat on the mat", "rain is expected tomorrow", "compilers translate source code"]
TOL = 1e-4


def archive(work: Path, store: Path, name: str, handler: dict, files: dict) -> Path:
    config = {"minWorkers": 1, "maxWorkers": 1, "batchSize": 4, "maxBatchDelay": 50,
              "handler": {"name": "embedder", "labels": None, **handler}, "archive": files}
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return build(path, store)


@pytest.fixture(scope="module")
def embedders(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalServer, dict[str, torch.nn.Module]]]:
    """A TorchServe serving `pixels` (image embedder, normalised) and `words` (text embedder), with the eager
    modules the archives were scripted from."""
    root = tmp_path_factory.mktemp("embedders")
    store = root / "store"
    (root / "samples").mkdir()
    (root / "samples" / "digit.png").write_bytes(png_bytes(digit_pixels(0)))
    image_model, text_model = PixelEmbedding(), MeanTokens()
    save_scripted(image_model, root / "pixels.pt")
    save_scripted(text_model, root / "words.pt")
    train_tokenizer(root / "tokenizer.json")
    text = {"tokenizer": "tokenizer.json", "max_length": MAX_LENGTH, "inputs": ["input_ids", "attention_mask"]}
    archives = [
        archive(root, store, "pixels", {"image": IMAGE, "embedding": {"normalize": True}},
                {"model_file": str(root / "pixels.pt"), "samples": str(root / "samples")}),
        archive(root, store, "words", {"text": text},
                {"model_file": str(root / "words.pt"), "extra_files": [str(root / "tokenizer.json")],
                 "no_samples": True}),
    ]
    server = LocalServer(root / "run", CONFIG, store, [a.name for a in archives], ports=free_ports())
    with server.running(START_TIMEOUT_S):
        yield server, {"pixels": image_model, "words": text_model, "tokenizer": root / "tokenizer.json"}


def post(server: LocalServer, path: str, body: bytes, content_type: str) -> requests.Response:
    headers = {**auth_header(server.read_keys().inference), "Content-Type": content_type}
    response = requests.post(server.urls.inference + path, data=body, headers=headers, timeout=120)
    assert response.status_code == 200, response.text
    return response


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def test_image_vectors_are_the_eager_model_s_normalised(embedders):
    server, models = embedders
    images = [digit_pixels(seed) for seed in range(3)]
    with torch.no_grad():
        want = unit(torch.cat([models["pixels"](pixel_input(p)) for p in images]).numpy())
    one = post(server, "/predictions/pixels", png_bytes(images[0]), "image/png").json()["embedding"]
    listed = post(server, "/predictions/pixels", json.dumps({"image": [p.tolist() for p in images]}).encode(),
                  "application/json").json()
    assert len(one) == DIM
    assert np.abs(np.asarray(one) - want[0]).max() < TOL
    assert np.abs(np.asarray([a["embedding"] for a in listed]) - want).max() < TOL
    # cosine similarity of normalised vectors is their dot product
    assert float(np.dot(listed[0]["embedding"], listed[1]["embedding"])) == pytest.approx(
        float(want[0] @ want[1]), abs=TOL)


def test_image_vectors_over_oip_are_fp32(embedders):
    server, models = embedders
    pixels = np.stack([digit_pixels(seed) for seed in (4, 5)])
    with torch.no_grad():
        want = unit(torch.cat([models["pixels"](pixel_input(p)) for p in pixels]).numpy())
    body = {"inputs": [{"name": "image", "shape": [2, 28, 28], "datatype": "UINT8", "data": pixels.ravel().tolist()}]}
    (output,) = post(server, "/v2/models/pixels/infer", json.dumps(body).encode(), "application/json").json()["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("embedding", "FP32", [2, DIM])
    assert np.abs(np.reshape(output["data"], (2, DIM)) - want).max() < TOL


def test_text_vectors_are_the_eager_model_s_over_rest_and_oip(embedders):
    server, models = embedders
    with torch.no_grad():
        want = torch.cat([models["words"](*token_input(models["tokenizer"], t)) for t in TEXTS]).numpy()
    plain = post(server, "/predictions/words", TEXTS[0].encode(), "text/plain").json()["embedding"]
    listed = post(server, "/predictions/words", json.dumps({"text": TEXTS}).encode(), "application/json").json()
    oip = {"inputs": [{"name": "text", "shape": [3], "datatype": "BYTES", "data": TEXTS}]}
    (output,) = post(server, "/v2/models/words/infer", json.dumps(oip).encode(), "application/json").json()["outputs"]
    assert np.abs(np.asarray(plain) - want[0]).max() < TOL
    assert np.abs(np.asarray([a["embedding"] for a in listed]) - want).max() < TOL
    assert (output["datatype"], output["shape"]) == ("FP32", [3, DIM])
    assert np.abs(np.reshape(output["data"], (3, DIM)) - want).max() < TOL
