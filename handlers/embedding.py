"""Embedder: images or texts -> one vector each (feature extraction, for search and retrieval).

The requests are those of the image classifier or of the text classifier, read by that handler itself (its
photo pipeline from `handler.image`, or its tokenizer from `handler.text`; the YAML sets exactly one): the
embedder composes the reader and answers from the model's output `(N, D)` (a tensor, or the output
`handler.output` names). Settings from the optional `handler.embedding`: `normalize` (L2-normalised vectors: the
cosine similarity of two is their dot product) and `float16` (JSON answers rounded to float16).

Answer per item: `{"embedding": [v0, ..., vD-1]}` (a list of these for a list), each value the shortest decimal
that reads back as the same float32 (or float16); the Open Inference Protocol answers `embedding` FP32 [n, D]
(float32 whatever `float16` says).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from handlers.answers import EmbeddingAnswer
from handlers.base import Decoded, ServingHandler
from handlers.config import EmbeddingSettings, ModelYaml
from handlers.errors import ModelConfigError
from handlers.image import ImageClassifier
from handlers.oip import OPEN_INFERENCE, OipRequest
from handlers.outputs import ModelOutputs
from handlers.text import TextClassifier


def input_reader(config: ModelYaml, context: object) -> ImageClassifier | TextClassifier:
    """The handler that reads this embedder's requests: the image classifier for `handler.image`, the text
    classifier for `handler.text`, configured with the same YAML and sharing the worker's context (the
    tokenizer file is read from its model_dir). ModelConfigError unless exactly one of them is set."""
    settings = config.handler
    if (settings.image is None) == (settings.text is None):
        raise ModelConfigError("embedder reads photos (handler.image) or texts (handler.text): set exactly one")
    reader = ImageClassifier() if settings.image is not None else TextClassifier()
    reader.configure(config)
    reader.context = context
    return reader


def json_values(vectors: np.ndarray, dtype: type) -> list[list[float]]:
    """(n, D) vectors -> nested lists of the shortest decimals that read back as the same `dtype` values."""
    return [[float(text) for text in row] for row in vectors.astype(dtype).astype(str)]


class Embedder(ServingHandler):
    """Feature extraction with the contract of `handlers.base` over the requests of the image or the text
    classifier (see the module docstring)."""

    protocols = (OPEN_INFERENCE,)
    oip_outputs = ("embedding",)
    reader: ImageClassifier | TextClassifier

    @property
    def embedding(self) -> EmbeddingSettings:
        return self.settings.embedding or EmbeddingSettings()

    def configure(self, config: ModelYaml) -> None:
        """The base checks, then the reader of `handler.image` or `handler.text` (`input_reader`)."""
        super().configure(config)
        self.reader = input_reader(config, self.context)

    def check_outputs(self, outputs: ModelOutputs) -> None:
        """Refuse, at start, an output that is not (n, D) floating-point vectors."""
        vectors = outputs.main
        if not isinstance(vectors, torch.Tensor) or vectors.ndim != 2 or not vectors.is_floating_point():
            shape = list(vectors.shape) if isinstance(vectors, torch.Tensor) else type(vectors).__name__
            raise ModelConfigError(f"model output {outputs.main_name!r} is {shape}; an embedder needs (n, D) float "
                                   "vectors (set handler.output to the output that holds them)")

    def example_input(self) -> torch.Tensor | tuple[torch.Tensor, ...]:
        return self.reader.example_input()

    def decode(self, body: object) -> Decoded:
        return self.reader.decode(body)

    def decode_oip(self, request: OipRequest) -> Decoded:
        return self.reader.decode_oip(request)

    def collate(self, items: Sequence[Decoded]) -> tuple[torch.Tensor, ...]:
        return self.reader.collate(items)

    def vectors(self, outputs: ModelOutputs) -> np.ndarray:
        """The request's (n, D) vectors as float32, L2-normalised when `handler.embedding.normalize`."""
        vectors = outputs.main.float()
        if self.embedding.normalize:
            vectors = F.normalize(vectors, p=2.0, dim=1)
        return vectors.numpy()

    def encode(self, outputs: ModelOutputs, item: Decoded) -> EmbeddingAnswer | list[EmbeddingAnswer]:
        rows = json_values(self.vectors(outputs), np.float16 if self.embedding.float16 else np.float32)
        answers: list[EmbeddingAnswer] = [{"embedding": row} for row in rows]
        return answers if item.many else answers[0]

    def encode_oip(self, outputs: ModelOutputs, item: Decoded) -> dict[str, np.ndarray]:
        return {"embedding": self.vectors(outputs).astype("<f4")}
