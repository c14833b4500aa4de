"""TabularClassifier: rows of numeric features -> class predictions.

Request: JSON `{"inputs": [[f1, ..., fN], ...], "return_probabilities": bool}` (N = `handler.tabular.num_features`),
or a NumPy `.npy` array of shape (rows, N). Every value must be a finite number. A `.npy` body larger than
`max_inputs_per_request` float64 rows (plus its header) is refused with 413 before it is parsed.
Answer: `{"predictions": [int, ...], "labels": [str, ...]}`, plus `"probabilities": [[p0, p1, ...], ...]` when
`return_probabilities` is true (the `TabularAnswer` of `handlers.answers`).
"""

from __future__ import annotations

import numpy as np
import torch

from handlers.answers import TabularAnswer
from handlers.base import Decoded, ServingHandler
from handlers.classification import check_class_scores, class_probabilities
from handlers.config import TabularInput
from handlers.decoding import check_finite, numeric_array, read_body
from handlers.errors import ValidationError
from handlers.oip import OPEN_INFERENCE, OipRequest, class_scores
from handlers.oip_tensors import OipError, finite_float32, single_input
from handlers.outputs import ModelOutputs

ALLOWED_KEYS = {"inputs", "return_probabilities"}
NPY_HEADER_BYTES = 4096  # a plain array's .npy header is 64 or 128 bytes (numpy pads it to a multiple of 64)


class TabularClassifier(ServingHandler):
    """Tabular classification with the contract of `handlers.base`; settings from `handler.tabular`. Also speaks
    the Open Inference Protocol (`handlers.oip`): one FP32 tensor [n, num_features]."""

    protocols = (OPEN_INFERENCE,)
    section = "tabular"
    oip_outputs = ("probabilities", "predicted_label")
    answer_per_item = False  # one answer holds the n rows of a request

    @property
    def tabular(self) -> TabularInput:
        return self.settings.tabular

    def check_outputs(self, outputs: ModelOutputs) -> None:
        check_class_scores(outputs, self.labels)

    def example_input(self) -> torch.Tensor:
        return torch.zeros(1, self.tabular.num_features)

    def decode(self, body: object) -> Decoded:
        body = read_body(body, images=False, max_npy_bytes=self.max_npy_bytes)
        if isinstance(body, np.ndarray):
            return Decoded(self.check_rows(check_finite(body, "inputs")))
        if not isinstance(body, dict):
            raise ValidationError(f'expected a JSON object {{"inputs": [[...], ...]}}, got {type(body).__name__}')
        options = self.request_options(body)
        if "inputs" not in body:
            raise ValidationError("missing key 'inputs' (a list of feature rows)")
        return Decoded(self.check_rows(numeric_array(body["inputs"], "inputs")), options=options)

    def decode_oip(self, request: OipRequest) -> Decoded:
        """The request's one input tensor, [n, num_features] finite FP32 values -> Decoded."""
        tensor = single_input(request, ("FP32",))
        rows, features = finite_float32(tensor), self.tabular.num_features
        if rows.ndim != 2 or rows.shape[1] != features or not len(rows):
            raise OipError(f"input '{tensor.name}': shape {list(rows.shape)}; expected [n, {features}] with n >= 1")
        return Decoded(torch.from_numpy(np.ascontiguousarray(rows)))

    @property
    def max_npy_bytes(self) -> int:
        """Largest `.npy` body worth parsing: `max_inputs_per_request` rows of float64 features plus its header."""
        return NPY_HEADER_BYTES + 8 * self.tabular.num_features * self.settings.max_inputs_per_request

    def request_options(self, body: dict) -> dict:
        """Per-request flags, checked: unknown keys and non-boolean flags are refused."""
        unknown = sorted(set(body) - ALLOWED_KEYS)
        if unknown:
            raise ValidationError(f"unknown keys {unknown}; allowed: {sorted(ALLOWED_KEYS)}")
        flag = body.get("return_probabilities", False)
        if not isinstance(flag, bool):
            raise ValidationError(f"'return_probabilities' must be true or false, got {flag!r}")
        return {"return_probabilities": flag}

    def check_rows(self, rows: np.ndarray) -> torch.Tensor:
        """(rows, features) float32 array with the configured feature count -> tensor."""
        features = self.tabular.num_features
        if rows.ndim != 2 or len(rows) == 0:
            raise ValidationError(f"'inputs' must be a non-empty list of rows of {features} numbers; "
                                  f"got an array of shape {list(rows.shape)}")
        if rows.shape[1] != features:
            raise ValidationError(f"each row needs {features} features; got {rows.shape[1]}")
        return torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))

    def encode_oip(self, outputs: ModelOutputs, item: Decoded) -> dict[str, np.ndarray]:
        return class_scores(outputs.main)

    def encode(self, outputs: ModelOutputs, item: Decoded) -> TabularAnswer:
        """(n, classes) scores of one request's n rows -> its answer (see the module docstring)."""
        probabilities = class_probabilities(outputs)
        predictions = probabilities.argmax(dim=1).tolist()
        answer: TabularAnswer = {
            "predictions": predictions,
            "labels": [self.labels[p] if self.labels else str(p) for p in predictions],
        }
        if item.options.get("return_probabilities"):
            answer["probabilities"] = [[round(float(p), 6) for p in row] for row in probabilities]
        return answer
