"""TabularClassifier through TorchServe's Context: answers, options, per-request validation errors."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

ROW = [float(i) / 10 for i in range(30)]


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def test_rows_are_predicted_with_labels_and_optional_probabilities(tabular_handler):
    plain = tabular_handler.one({"inputs": [ROW, ROW[::-1]]})
    assert plain.status == 200
    body = plain.json()
    assert set(body) == {"predictions", "labels"} and len(body["predictions"]) == 2
    assert all(label in ("malignant", "benign") for label in body["labels"])

    detailed = tabular_handler.one({"inputs": [ROW, ROW[::-1]], "return_probabilities": True}).json()
    assert detailed["predictions"] == body["predictions"]
    for row, prediction in zip(detailed["probabilities"], detailed["predictions"], strict=True):
        assert sum(row) == pytest.approx(1.0, abs=1e-5) and int(np.argmax(row)) == prediction


def test_json_text_and_npy_bodies_agree(tabular_handler):
    npy = npy_bytes(np.array([ROW], dtype=np.float64))
    answers = tabular_handler.batch({"inputs": [ROW]}, json.dumps({"inputs": [ROW]}).encode(), npy)
    assert [a.status for a in answers] == [200, 200, 200]
    assert answers[0].json() == answers[1].json() == answers[2].json()


BAD = [
    ("missing inputs", {"rows": [ROW]}, "validation_error", "unknown keys ['rows']"),
    ("no inputs key", {}, "validation_error", "missing key 'inputs'"),
    ("wrong type", [ROW], "validation_error", "expected a JSON object"),
    ("inputs not a list", {"inputs": "abc"}, "validation_error", "must be a list"),
    ("flat row", {"inputs": ROW}, "validation_error", "shape [30]"),
    ("empty", {"inputs": []}, "validation_error", "non-empty"),
    ("wrong feature count", {"inputs": [ROW[:29]]}, "validation_error", "needs 30 features; got 29"),
    ("ragged", {"inputs": [ROW, ROW[:10]]}, "validation_error", "ragged"),
    ("nan", b'{"inputs": [[NaN' + b", 0" * 29 + b"]]}", "validation_error", "NaN or Inf"),
    ("infinity", b'{"inputs": [[Infinity' + b", 0" * 29 + b"]]}", "validation_error", "NaN or Inf"),
    ("string feature", {"inputs": [["x", *ROW[1:]]]}, "validation_error", "inputs[0][0] = 'x' is not a number"),
    ("null feature", {"inputs": [[None, *ROW[1:]]]}, "validation_error", "inputs[0][0] = None is not a number"),
    ("non-bool flag", {"inputs": [ROW], "return_probabilities": "yes"}, "validation_error", "must be true or false"),
    ("malformed json", b'{"inputs": [[1,', "decode_error", "malformed JSON"),
    ("not utf8", b"\xc3\x28", "decode_error", "not UTF-8"),
    ("empty body", b"", "decode_error", "empty request body"),
    ("pickled npy", npy_bytes(np.array([{"a": 1}], dtype=object)), "decode_error", "not a valid .npy array"),
    ("npy of strings", npy_bytes(np.array([["a"] * 30])), "validation_error", "has dtype <U1; numbers expected"),
]


@pytest.mark.parametrize(("case", "body", "kind", "text"), BAD, ids=[c[0] for c in BAD])
def test_bad_request_is_refused_alone(tabular_handler, case, body, kind, text):
    good = {"inputs": [ROW]}
    answers = tabular_handler.batch(good, body, good)
    error = answers[1].json()
    assert answers[1].status == 400 and error["code"] == 400
    assert error["type"] == kind
    assert text in error["message"], error["message"]
    assert answers[0].status == answers[2].status == 200
    assert answers[0].json() == answers[2].json() == tabular_handler.one(good).json()


def test_too_many_rows_is_413(tabular_handler):
    answer = tabular_handler.one({"inputs": [ROW] * 17})
    assert answer.status == 413
    assert answer.json()["message"] == "17 inputs in one request; at most 16 allowed"


def test_npy_bodies_beyond_the_row_limit_are_413(tabular_handler):
    """16 rows allowed: 17 float32 rows are parsed and counted; 40 float64 rows are refused by size unparsed."""
    counted = tabular_handler.one(npy_bytes(np.array([ROW] * 17, dtype=np.float32)))
    assert counted.status == 413 and counted.json()["message"] == "17 inputs in one request; at most 16 allowed"
    big = npy_bytes(np.array([ROW] * 40, dtype=np.float64))
    sized = tabular_handler.one(big)
    assert sized.status == 413 and sized.json()["type"] == "payload_too_large"
    limit = 4096 + 8 * 30 * 16
    assert sized.json()["message"] == f".npy body of {len(big)} bytes exceeds {limit} bytes"
