"""Embedder through TorchServe's Context, over images and over texts: the eager model's vectors on inputs built
here (normalised pixels; the tokenizer file's ids), L2 normalisation, float16 rounding, OIP's FP32 output, the
image and text classifiers' refusals kept per request, and the start checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer
from torch import nn

from handlers.embedding import Embedder
from handlers.errors import ModelConfigError
from tests.served import MNIST_IMAGE, digit_pixels, png_bytes, serve
from tests.unit.test_oip import frame, outputs_of, send, tensor
from tests.unit.text_models import train_tokenizer

IMAGE = {**MNIST_IMAGE, "background": "dark", "fit": "stretch"}
TEXTS = ["the cat sat on the mat", "stock markets fell", "a quiet symphony"]
MAX_LENGTH = 10
DIM = 16


class PixelEmbedding(nn.Module):
    """(n, 1, 28, 28) -> (n, 16): a linear projection of the pixels."""

    def __init__(self) -> None:
        super().__init__()
        self.project = nn.Sequential(nn.Flatten(), nn.Linear(784, DIM))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(x)


class MeanTokens(nn.Module):
    """(n, L) ids and mask -> (n, 16): the masked mean of the token embeddings."""

    def __init__(self, vocab_size: int = 128) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, DIM)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).float()
        return (self.embedding(input_ids) * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)


def image_embedder(tmp_path, model: nn.Module, **embedding) -> object:
    handler = {"name": "embedder", "labels": None, "max_inputs_per_request": 4, "image": IMAGE}
    if embedding:
        handler["embedding"] = embedding
    return serve(tmp_path, Embedder, model, {"batchSize": 4, "handler": handler}, {})


def text_embedder(tmp_path, model: nn.Module, **embedding) -> object:
    train_tokenizer(tmp_path / "tokenizer.json")
    text = {"tokenizer": "tokenizer.json", "max_length": MAX_LENGTH, "inputs": ["input_ids", "attention_mask"]}
    handler = {"name": "embedder", "labels": None, "text": text, **({"embedding": embedding} if embedding else {})}
    return serve(tmp_path, Embedder, model, {"batchSize": 4, "handler": handler}, {})


def pixel_input(pixels: np.ndarray) -> torch.Tensor:
    """28x28 pixels as the model sees them: (x / 255 - mean) / std."""
    return torch.from_numpy((pixels.astype(np.float32) / 255 - 0.1307) / 0.3081)[None, None]


def token_input(tokenizer_file, text: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A text as the model sees it: its ids cut to MAX_LENGTH ([SEP] kept last) or padded with [PAD] to it,
    mask 1 on tokens."""
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    ids = tokenizer.encode(text).ids
    ids = ids[: MAX_LENGTH - 1] + [ids[-1]] if len(ids) > MAX_LENGTH else ids
    pad = [tokenizer.token_to_id("[PAD]")] * (MAX_LENGTH - len(ids))
    return torch.tensor([ids + pad]), torch.tensor([[1] * len(ids) + [0] * len(pad)])


def vectors(answer) -> np.ndarray:
    body = answer.json()
    assert answer.status == 200, body
    return np.array([item["embedding"] for item in body] if isinstance(body, list) else body["embedding"])


def test_image_vectors_are_the_eager_model_s(tmp_path):
    model = PixelEmbedding()
    served = image_embedder(tmp_path, model)  # save_scripted draws the weights into `model` itself
    images = [digit_pixels(seed) for seed in range(3)]
    with torch.no_grad():
        want = torch.cat([model(pixel_input(p)) for p in images]).numpy()
    got = vectors(served.one({"image": [p.tolist() for p in images]}))
    assert got.shape == (3, DIM)
    assert np.abs(got - want).max() < 1e-4
    assert np.abs(vectors(served.one(png_bytes(images[1]))) - want[1]).max() < 1e-4


def test_normalised_vectors_have_unit_length_and_the_model_s_direction(tmp_path):
    model = PixelEmbedding()
    served = image_embedder(tmp_path, model, normalize=True)
    pixels = digit_pixels(4)
    with torch.no_grad():
        want = model(pixel_input(pixels))[0].numpy()
    got = vectors(served.one(png_bytes(pixels)))
    assert np.linalg.norm(got) == pytest.approx(1.0, abs=1e-6)
    assert np.abs(got - want / np.linalg.norm(want)).max() < 1e-6


def test_float16_rounds_the_json_answer_but_not_oip(tmp_path):
    model = PixelEmbedding()
    served = image_embedder(tmp_path, model, float16=True)
    pixels = digit_pixels(5)
    with torch.no_grad():
        want = model(pixel_input(pixels))[0].numpy()
    got = vectors(served.one(png_bytes(pixels)))
    assert np.array_equal(got.astype(np.float16), want.astype(np.float16))  # each reads back as the float16 value
    assert max(len(repr(v)) for v in got.tolist()) <= 8  # ... in its shortest decimal, e.g. -0.05872
    out = outputs_of(send(served, frame({"inputs": [tensor(pixels[None].tolist(), [1, 28, 28], "UINT8")]}))[0])
    assert (out["embedding"]["datatype"], out["embedding"]["shape"]) == ("FP32", [1, DIM])
    assert np.abs(np.asarray(out["embedding"]["data"]) - want).max() < 1e-5


def test_text_vectors_are_the_eager_model_s_and_batch_mates_keep_theirs(tmp_path):
    model = MeanTokens()
    served = text_embedder(tmp_path, model)
    with torch.no_grad():
        want = torch.cat([model(*token_input(tmp_path / "tokenizer.json", text)) for text in TEXTS]).numpy()
    answers = served.batch(TEXTS[0], {"text": TEXTS[1:]}, "   ")
    assert np.abs(vectors(answers[0]) - want[0]).max() < 1e-4
    assert np.abs(vectors(answers[1]) - want[1:]).max() < 1e-4
    assert (answers[2].status, answers[2].json()["type"]) == (400, "validation_error")


def test_text_oip_answers_fp32_vectors(tmp_path):
    model = MeanTokens()
    served = text_embedder(tmp_path, model, normalize=True)
    with torch.no_grad():
        want = torch.nn.functional.normalize(model(*token_input(tmp_path / "tokenizer.json", TEXTS[2])), dim=1)
    out = outputs_of(send(served, frame({"inputs": [tensor([TEXTS[2]], [1], "BYTES")]}))[0])
    assert out["embedding"]["shape"] == [1, DIM]
    assert np.abs(np.asarray(out["embedding"]["data"]) - want.numpy().ravel()).max() < 1e-6


def test_neither_or_both_inputs_are_refused(tmp_path):
    for extra in ({}, {"text": {"tokenizer": "tokenizer.json", "max_length": 8}}):
        config = {"handler": {"name": "embedder", "labels": None, **({"image": IMAGE} if extra else {}), **extra}}
        with pytest.raises(ModelConfigError, match="set exactly one"):
            serve(tmp_path, Embedder, PixelEmbedding(), config, {})


def test_an_output_that_is_not_vectors_is_refused(tmp_path):
    config = {"handler": {"name": "embedder", "labels": None, "image": IMAGE}}
    with pytest.raises(ModelConfigError, match=r"needs \(n, D\) float vectors"):
        serve(tmp_path, Embedder, nn.Identity(), config, {})
