"""TextClassifier through TorchServe's Context: every body form answers `model(tokenizer(text))`, bad texts get
their own 4xx while their batch-mates are answered, padding and truncation as the YAML says."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch

from handlers.backends.quiet import jit_deprecation_ignored
from handlers.errors import ModelConfigError
from handlers.text import TextClassifier
from tests.served import serve
from tests.unit.test_oip import frame, outputs_of, send, tensor
from tests.unit.text_models import LABELS, BagOfTokens, IdsOnly, reference, train_tokenizer
from toolkit.archive.worker import Request

TEXTS = ["The cat sat on the mat.", "Markets fell on Monday", "an orchestra played"]
MAX_LENGTH = 12
TOL = 2e-6  # answers are rounded to 6 decimals


def text_config(**text) -> dict:
    settings = {"tokenizer": "tokenizer.json", "max_length": MAX_LENGTH, "inputs": ["input_ids", "attention_mask"],
                "max_bytes": 200, **text}
    return {"batchSize": 8, "maxWorkers": 1,
            "handler": {"name": "text_classifier", "max_inputs_per_request": 4, "text": settings}}


@pytest.fixture
def make_text_handler(tmp_path):
    def build(model: torch.nn.Module | None = None, **text):
        train_tokenizer(tmp_path / "tokenizer.json")
        return serve(tmp_path, TextClassifier, model or BagOfTokens(), text_config(**text), LABELS)

    return build


@pytest.fixture
def text_handler(make_text_handler):
    return make_text_handler()


def expected(served, texts: list[str], inputs=("input_ids", "attention_mask")) -> list[list[float]]:
    with jit_deprecation_ignored():  # the test's own TorchScript reference
        model = torch.jit.load(str(served.worker.model_dir / "model.pt"))
    return reference(model, served.worker.model_dir / "tokenizer.json", texts, MAX_LENGTH, inputs).tolist()


def probabilities(answer) -> list:
    body = answer.json()
    assert answer.status == 200, body
    return [item["probabilities"] for item in body] if isinstance(body, list) else body["probabilities"]


def test_text_plain_json_and_lists_answer_the_reference(text_handler):
    want = expected(text_handler, TEXTS)
    answers = text_handler.batch(TEXTS[0], {"text": TEXTS[1]}, {"text": TEXTS}, TEXTS,
                                 Request(TEXTS[2].encode(), "application/octet-stream"))
    assert probabilities(answers[0]) == pytest.approx(want[0], abs=TOL)
    assert probabilities(answers[1]) == pytest.approx(want[1], abs=TOL)
    for answer in answers[2:4]:
        got = probabilities(answer)
        assert len(got) == 3 and all(g == pytest.approx(w, abs=TOL) for g, w in zip(got, want, strict=True))
    assert probabilities(answers[4]) == pytest.approx(want[2], abs=TOL)
    body = answers[0].json()
    assert set(body) == {"predicted_label", "label", "probabilities"}
    assert body["label"] == LABELS[str(body["predicted_label"])] and body["predicted_label"] == np.argmax(want[0])


def binary_strings(texts: list[str]) -> bytes:
    return b"".join(struct.pack("<I", len(t.encode())) + t.encode() for t in texts)


def test_oip_bytes_json_and_binary_answer_the_reference(text_handler):
    want = expected(text_handler, TEXTS)
    as_json = {"inputs": [tensor(TEXTS, [3], "BYTES", "text")]}
    column = {"inputs": [tensor([[t] for t in TEXTS], [3, 1], "BYTES", "text")]}
    raw = binary_strings(TEXTS)
    header = json.dumps({"inputs": [{"name": "text", "shape": [3], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": len(raw)}}]}).encode()
    binary = frame(header + raw, headers={"Inference-Header-Content-Length": str(len(header))})
    for answer in send(text_handler, frame(as_json), frame(column), binary):
        outputs = outputs_of(answer)
        assert outputs["probabilities"]["shape"] == [3, 4]
        assert np.allclose(np.reshape(outputs["probabilities"]["data"], (3, 4)), want, atol=1e-6)
        assert outputs["predicted_label"]["data"] == np.argmax(want, axis=1).tolist()


BAD = [
    ("invalid utf-8", Request(b"caf\xe9 au lait", "text/plain"), 400, "not UTF-8 text"),
    ("empty", Request(b"", "text/plain"), 400, "empty"),
    ("blank", "   \n ", 400, "is empty"),
    ("blank in a list", {"text": ["fine", " "]}, 400, "text[1] is empty"),
    ("too long", "word " * 50, 413, "250 UTF-8 bytes; at most 200"),
    ("lone surrogate", {"text": "\ud800"}, 400, "not valid Unicode"),
    ("other key", {"txt": "hello"}, 400, "got the keys ['txt']"),
    ("number", {"text": 5}, 400, "got int"),
    ("not a string in the list", {"text": ["a", 2]}, 400, "text[1] must be a string"),
    ("too many", {"text": ["a"] * 5}, 413, "at most 4"),
    ("malformed json", Request(b'{"text": ', "application/json"), 400, "malformed JSON"),
]


@pytest.mark.parametrize(("case", "body", "status", "text"), BAD, ids=[c[0] for c in BAD])
def test_a_bad_text_gets_its_own_error_and_batch_mates_are_answered(text_handler, case, body, status, text):
    want = expected(text_handler, TEXTS[:1])[0]
    answers = text_handler.batch(TEXTS[0], body, {"text": TEXTS[0]})
    assert answers[1].status == status, answers[1].json()
    assert text in answers[1].json()["message"], answers[1].json()
    for good in (answers[0], answers[2]):
        assert probabilities(good) == pytest.approx(want, abs=TOL)


@pytest.mark.parametrize(("inputs", "text"), [
    ([tensor([1.0, 2.0], [2], "FP32", "text")], "BYTES"),
    ([tensor(["a", "b", "c", "d"], [2, 2], "BYTES", "text")], "[2, 2]"),
    ([tensor(["a", " "], [2], "BYTES", "text")], "element 1 is empty"),
    ([tensor(["a", 3], [2], "BYTES", "text")], "only strings"),
    ([tensor(["a"], [2], "BYTES", "text")], "needs 2 values"),
])
def test_oip_bad_text_tensors_are_400_naming_the_tensor(text_handler, inputs, text):
    (answer,) = send(text_handler, frame({"inputs": inputs}))
    assert answer.status == 400 and text in answer.json()["error"], answer.json()
    assert "'text'" in answer.json()["error"]


@pytest.mark.parametrize(("raw", "size", "text"), [
    (struct.pack("<I", 10) + b"abc", 7, "element 0 declares 10 bytes"),
    (binary_strings(["ab"]) + b"x", 7, "1 bytes after"),
    (struct.pack("<I", 2) + b"\xff\xfe", 6, "not UTF-8"),
])
def test_oip_bad_binary_strings_are_400(text_handler, raw, size, text):
    header = json.dumps({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": size}}]}).encode()
    (answer,) = send(text_handler, frame(header + raw, headers={"Inference-Header-Content-Length": str(len(header))}))
    assert answer.status == 400 and text in answer.json()["error"], answer.json()


def test_long_texts_are_truncated_to_max_length(text_handler):
    long_text = " ".join(["the cat sat on the mat"] * 5)  # 30 tokens
    decoded = text_handler.handler.decode(long_text)
    ids, mask = decoded.tensors
    assert ids.shape == mask.shape == (1, MAX_LENGTH) and mask.all()
    assert probabilities(text_handler.one(long_text)) == pytest.approx(expected(text_handler, [long_text])[0],
                                                                       abs=TOL)


def test_padding_uses_the_tokenizers_pad_id_to_max_length(text_handler):
    ids, mask = text_handler.handler.decode("cat").tensors
    assert ids.shape == (1, MAX_LENGTH)
    assert ids[0, 3:].tolist() == [3] * (MAX_LENGTH - 3) and mask[0].tolist() == [1, 1, 1] + [0] * (MAX_LENGTH - 3)


def test_padding_longest_pads_a_batch_to_its_longest_text(make_text_handler):
    served = make_text_handler(padding="longest")
    handler = served.handler
    items = [handler.decode("cat"), handler.decode({"text": ["the cat sat on the mat", "dogs"]})]
    assert [item.tensors[0].shape[1] for item in items] == [3, 8]
    ids, mask = handler.collate(items)
    assert ids.shape == mask.shape == (3, 8)
    assert ids[0].tolist() == items[0].tensors[0][0].tolist() + [3] * 5 and mask[0].sum() == 3
    alone = probabilities(served.one("cat"))  # masked model: padding changes nothing
    answers = served.batch("cat", {"text": ["the cat sat on the mat", "dogs"]})
    assert probabilities(answers[0]) == pytest.approx(alone, abs=TOL)


def test_input_ids_only(make_text_handler):
    served = make_text_handler(IdsOnly(), inputs=["input_ids"])
    assert probabilities(served.one(TEXTS[1])) == pytest.approx(
        expected(served, TEXTS[1:2], ("input_ids",))[0], abs=TOL)


def test_a_missing_or_unreadable_tokenizer_fails_at_start(make_text_handler, tmp_path):
    with pytest.raises(ModelConfigError, match=r"handler.text.tokenizer: vocab/tok.json is missing|tok.json"):
        make_text_handler(tokenizer="vocab/tok.json")
    (tmp_path / "vocab").mkdir(exist_ok=True)
    (tmp_path / "vocab" / "tok.json").write_text("{}")
    with pytest.raises(ModelConfigError, match="not a Hugging Face tokenizers file"):
        make_text_handler(tokenizer="vocab/tok.json")
