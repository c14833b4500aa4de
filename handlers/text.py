"""TextClassifier: texts -> class label, probabilities, with a Hugging Face `tokenizers` file packed in the archive.

Accepted request bodies (one request may carry one text or a list of them):
- `text/plain` (UTF-8): the body is the text;
- JSON `{"text": "..."}` or `{"text": ["...", ...]}`, or a bare JSON list of strings;
- the Open Inference Protocol: one `BYTES` tensor [n] (or [n, 1]) of UTF-8 texts, JSON or binary.
Every text is tokenized by the archive's tokenizer (`handler.text.tokenizer`, a `tokenizer.json` packed through
`archive.extra_files`), truncated to `max_length` tokens (special tokens included) and padded with the
tokenizer's padding id (0 when it has none) to `max_length`, or to the batch's longest text with
`padding: longest`. The model gets `handler.text.inputs` in that order, each (n, length) int64: `input_ids`,
`attention_mask` (1 for tokens, 0 for padding), `token_type_ids`.
Refused per request: invalid UTF-8 and an empty (or blank) text with 400, a text over `max_bytes` UTF-8 bytes
with 413; the other requests of the batch are answered.
Answer per text: `{"predicted_label": int, "label": str, "probabilities": [p0, ...]}` (or `"top_k"`), as the
image classifier's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from handlers.answers import ImageAnswer
from handlers.base import Decoded, ServingHandler
from handlers.classification import check_class_scores, class_probabilities, ranked_answer
from handlers.config import TextInput
from handlers.decoding import parse_json_text
from handlers.errors import ClientError, DecodeError, ModelConfigError, PayloadTooLarge, ValidationError
from handlers.oip import OPEN_INFERENCE, OipRequest, class_scores
from handlers.oip_tensors import OipError, single_input
from handlers.outputs import ModelOutputs

TEXT_KEY = "text"  # the one key of a JSON body


@dataclass(frozen=True)
class TextTokenizer:
    """A `tokenizers` Tokenizer set to truncate at `max_length` and not to pad (the handler pads a whole batch),
    with the padding ids of its file (0 when it sets none)."""

    tokenizer: Tokenizer
    pad_id: int
    pad_type_id: int

    @classmethod
    def load(cls, path: Path, max_length: int) -> TextTokenizer:
        """The tokenizer file at `path` (inside the extracted archive); ModelConfigError when it is missing or
        is not a `tokenizers` file."""
        if not path.is_file():
            raise ModelConfigError(f"handler.text.tokenizer: {path.name} is missing from the archive (looked for "
                                   f"{path}); pack it with archive.extra_files")
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception for a file it cannot read
            raise ModelConfigError(f"handler.text.tokenizer: {path.name} is not a Hugging Face tokenizers file: "
                                   f"{exc}") from None
        padding = tokenizer.padding or {}
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length)
        return cls(tokenizer, int(padding.get("pad_id", 0)), int(padding.get("pad_type_id", 0)))

    def encode(self, texts: Sequence[str], inputs: Sequence[str], length: int | None) -> tuple[torch.Tensor, ...]:
        """Texts -> one (n, L) int64 tensor per name of `inputs`, padded to `length` (None: the longest text)."""
        encodings = self.tokenizer.encode_batch(list(texts))
        rows = {"input_ids": [e.ids for e in encodings], "attention_mask": [e.attention_mask for e in encodings],
                "token_type_ids": [e.type_ids for e in encodings]}
        width = length or max(len(ids) for ids in rows["input_ids"])
        return tuple(padded(rows[name], width, self.pad_value(name)) for name in inputs)

    def pad_value(self, name: str) -> int:
        """What pads input `name`: the padding id for token ids, 0 in the attention mask."""
        return {"input_ids": self.pad_id, "token_type_ids": self.pad_type_id}.get(name, 0)


def padded(rows: Sequence[Sequence[int]], width: int, value: int) -> torch.Tensor:
    """Rows of ids -> (n, width) int64, each row right-padded with `value`."""
    out = np.full((len(rows), width), value, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return torch.from_numpy(out)


class TextClassifier(ServingHandler):
    """Text classification with the contract of `handlers.base`; settings from `handler.text`. Also speaks the
    Open Inference Protocol (`handlers.oip`): one BYTES tensor of n texts."""

    protocols = (OPEN_INFERENCE,)
    section = "text"
    oip_outputs = ("probabilities", "predicted_label")

    @property
    def text(self) -> TextInput:
        return self.settings.text

    @cached_property
    def tokenizer(self) -> TextTokenizer:
        """The archive's tokenizer, loaded at the warm-up of `initialize`."""
        model_dir = Path(self.context.system_properties["model_dir"])
        return TextTokenizer.load(model_dir / self.text.tokenizer, self.text.max_length)

    def check_outputs(self, outputs: ModelOutputs) -> None:
        check_class_scores(outputs, self.labels)

    def example_input(self) -> tuple[torch.Tensor, ...]:
        return self.tokenize(["example text"])

    def decode(self, body: object) -> Decoded:
        texts, many = self.texts_of(body)
        return Decoded(self.tokenize(texts), many=many)

    def decode_oip(self, request: OipRequest) -> Decoded:
        """The request's one BYTES tensor, [n] or [n, 1] UTF-8 texts -> Decoded (a list)."""
        tensor = single_input(request, ("BYTES",))
        array = tensor.array
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim != 1 or not len(array):
            raise OipError(f"input '{tensor.name}': shape {list(tensor.array.shape)}; expected [n] or [n, 1] "
                           "texts with n >= 1")
        try:
            self.check_count(len(array))
            texts = [self.checked(utf8_text(data, f"element {i}"), f"element {i}") for i, data in enumerate(array)]
        except ClientError as error:
            raise OipError(f"input '{tensor.name}': {error.message}", error.status, error.phrase) from None
        return Decoded(self.tokenize(texts), many=True)

    def texts_of(self, body: object) -> tuple[list[str], bool]:
        """A TorchServe body -> its checked texts and whether a list was sent. A str body is text (TorchServe
        decoded a text/* body); bytes are UTF-8 text, or JSON when they start like it; parsed JSON is JSON."""
        if body is None:
            raise DecodeError("empty request body")
        if isinstance(body, bytes | bytearray):
            body = utf8_text(bytes(body), "body")
            if body.lstrip()[:1] in ("{", "["):
                body = parse_json_text(body)
                return self.json_texts(body)
        if isinstance(body, str):
            return [self.checked(body, "text")], False
        return self.json_texts(body)

    def json_texts(self, body: object) -> tuple[list[str], bool]:
        """JSON `{"text": str | [str, ...]}` or a bare list of strings -> checked texts, and whether a list."""
        if isinstance(body, dict):
            if set(body) != {TEXT_KEY}:
                raise ValidationError(f'expected {{"text": "..."}} or {{"text": ["...", ...]}}; '
                                      f"got the keys {sorted(body)}")
            body = body[TEXT_KEY]
            if isinstance(body, str):
                return [self.checked(body, "text")], False
        if not isinstance(body, list) or not body:
            raise ValidationError(f"'text' must be a string or a non-empty list of strings, got {type(body).__name__}")
        self.check_count(len(body))
        for i, item in enumerate(body):
            if not isinstance(item, str):
                raise ValidationError(f"text[{i}] must be a string, got {type(item).__name__}")
        return [self.checked(item, f"text[{i}]") for i, item in enumerate(body)], True

    def checked(self, text: str, where: str) -> str:
        """`text` unless it is blank (400), not encodable as UTF-8 (400) or over `max_bytes` (413)."""
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            raise DecodeError(f"{where} is not valid Unicode (a lone surrogate)") from None
        if not text.strip():
            raise ValidationError(f"{where} is empty; send at least one non-blank character")
        if size > self.text.max_bytes:
            raise PayloadTooLarge(f"{where} has {size} UTF-8 bytes; at most {self.text.max_bytes} allowed "
                                  "(handler.text.max_bytes)")
        return text

    def tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, ...]:
        """Texts -> the model's inputs (`handler.text.inputs`), padded to max_length or to the longest text."""
        length = self.text.max_length if self.text.padding == "max_length" else None
        return self.tokenizer.encode(texts, self.text.inputs, length)

    def collate(self, items: Sequence[Decoded]) -> tuple[torch.Tensor, ...]:
        """Every request's token tensors, each right-padded to the batch's longest (with `padding: longest`;
        with max_length they are all that long already), then concatenated in request order."""
        width = max(item.tensors[0].shape[1] for item in items)
        return tuple(
            torch.cat([torch.nn.functional.pad(item.tensors[k], (0, width - item.tensors[k].shape[1]),
                                               value=self.tokenizer.pad_value(name)) for item in items])
            for k, name in enumerate(self.text.inputs)
        )

    def encode(self, outputs: ModelOutputs, item: Decoded) -> ImageAnswer | list[ImageAnswer]:
        """(n, classes) scores of one request's n texts -> one answer, or a list of n when a list was sent."""
        answers = [ranked_answer(row, self.labels, self.settings.top_k)
                   for row in class_probabilities(outputs).tolist()]
        return answers if item.many else answers[0]

    def encode_oip(self, outputs: ModelOutputs, item: Decoded) -> dict[str, np.ndarray]:
        return class_scores(outputs.main)


def utf8_text(data: bytes, where: str) -> str:
    """UTF-8 bytes -> text, or DecodeError naming the first invalid byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"{where} is not UTF-8 text (invalid byte at offset {exc.start})") from None
