"""The base handler: one typed contract for every model we serve, on TorchServe's own hooks.

    handle(data, context) = postprocess(inference(preprocess(data)))

    preprocess   one row per request -> Batch: each body decoded and validated (`decode`), a client mistake kept
                 as that request's ClientError; the good requests' inputs concatenated into one tensor
    inference    Batch -> Batch with `outputs`: one batched forward of the model on the worker's device
    postprocess  Batch -> one JSON answer per request, in order (`encode`), a 4xx status and JSON error body
                 for each refused request

Subclasses implement `decode` (one request body -> `Decoded`, raising `ClientError` for client mistakes),
`encode` (that request's rows of model output -> a JSON-serialisable answer) and `example_input`; these are
abstract, so a handler missing one fails at instantiation (the archive preflight), not on its first request.
A TorchServe user may override `preprocess`, `inference` or `postprocess` as with any TorchServe handler, with
the inputs and outputs their docstrings state. A request that fails decoding gets its own 4xx and JSON error
body; its batch-mates are still inferred. Anything raised outside `decode` fails the whole batch (TorchServe
answers every request of it with 503).
"""

from __future__ import annotations

import abc
import json
import logging
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from ts.torch_handler.base_handler import BaseHandler

from handlers.backends import Backend, load_backend
from handlers.config import ModelYaml, worker_config
from handlers.decoding import request_body
from handlers.errors import ClientError, PayloadTooLarge
from handlers.metrics import HandlerMetrics
from handlers.worker import apply_threads, choose_threads, load_labels, select_device

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decoded:
    """One request after decode and validation.

    `inputs` is (n, *input_shape) float32 with n >= 1; `many` says the client sent a list and gets a list
    of n answers back; `options` holds per-request flags such as `return_probabilities`.
    """

    inputs: torch.Tensor
    many: bool = False
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Batch:
    """One TorchServe batch on its way through preprocess -> inference -> postprocess.

    `requests`: one entry per request of the batch, in order: its `Decoded` inputs, or the `ClientError` it will
        be answered with.
    `inputs`: (N, *input_shape) float32 on the CPU: the inputs of every decoded request concatenated in request
        order (N = the sum of their n); None when every request was refused.
    `outputs`: (N, classes) float32 on the CPU, set by `inference`: row i scores `inputs[i]`. Scores are whatever
        the model returns (our models return log-probabilities); `encode` takes their softmax.
    """

    requests: list[Decoded | ClientError]
    inputs: torch.Tensor | None = None
    outputs: torch.Tensor | None = None

    @property
    def decoded(self) -> list[Decoded]:
        """The requests that decoded, in order (those whose rows make up `inputs` and `outputs`)."""
        return [request for request in self.requests if isinstance(request, Decoded)]

    def split_outputs(self) -> list[torch.Tensor]:
        """`outputs` split back per decoded request: one (n, classes) tensor each, in order."""
        if self.inputs is None:
            return []
        if self.outputs is None or len(self.outputs) != len(self.inputs):
            got = None if self.outputs is None else len(self.outputs)
            raise RuntimeError(f"inference gave {got} output rows for {len(self.inputs)} inputs")
        return list(torch.split(self.outputs, [len(item.inputs) for item in self.decoded]))


class ServingHandler(BaseHandler):
    """Base of our handlers. Subclasses must define decode, encode and example_input (abstract methods)."""

    config: ModelYaml
    model: Backend
    labels: list[str] | None
    handler_metrics: HandlerMetrics | None = None  # created at the first batch (handlers.metrics)

    def initialize(self, context) -> None:
        """Validate the model config, pick device and threads, load model and labels, warm up."""
        self.context = context
        self.config = worker_config(context.model_yaml_config)
        self.settings = self.config.handler
        model_dir = Path(context.system_properties["model_dir"])
        self.device = select_device(context.system_properties)
        cores = len(os.sched_getaffinity(0))
        self.threads = choose_threads(self.settings.threads, self.config.max_workers, cores)
        apply_threads(self.threads)
        model_file = model_dir / context.manifest["model"]["serializedFile"]
        self.model = load_backend(model_file, self.device, self.threads)
        self.labels = load_labels(model_dir / self.settings.labels if self.settings.labels else None)
        self.model(self.example_input())  # warm-up: the first request must not pay for lazy init
        self.initialized = True
        logger.info("%s ready: device=%s threads=%d backend=%s", context.model_name, self.device,
                    self.threads, self.model.name)

    @abc.abstractmethod
    def decode(self, body: object) -> Decoded:
        """One request body (bytes, str or parsed JSON, as TorchServe hands it over) -> Decoded.

        Raise a ClientError subclass for anything the client must fix: that request alone is refused with it.
        """

    @abc.abstractmethod
    def encode(self, outputs: torch.Tensor, item: Decoded) -> object:
        """(n, classes) model output rows of one request (n = len(item.inputs)) -> its JSON-serialisable answer."""

    @abc.abstractmethod
    def example_input(self) -> torch.Tensor:
        """A valid (1, *input_shape) model input for the warm-up forward of `initialize`."""

    def handle(self, data: list[dict], context) -> list[bytes]:
        """TorchServe's entry point for one batch: `postprocess(inference(preprocess(data)))`.

        `data` holds one row per request, as TorchServe's worker builds it; the result is one JSON answer (bytes)
        per request, in order. `inference` is skipped when every request of the batch was refused. What the
        batch did (outcome per request, batch size, decode and inference times) goes to `context.metrics`
        (handlers.metrics).
        """
        self.context = context
        if self.handler_metrics is None:
            self.handler_metrics = HandlerMetrics.for_context(context)
        start = time.perf_counter()
        try:
            batch = self.preprocess(data)
            decoded = time.perf_counter()
            if batch.inputs is not None:
                batch = self.inference(batch)
            inferred = time.perf_counter()
            answers = self.postprocess(batch)
            if len(answers) != len(data):
                raise RuntimeError(f"expected {len(data)} answers, got {len(answers)}")
        except Exception:
            self.handler_metrics.failed(len(data))
            raise
        self.handler_metrics.batch(
            batch.requests, 0 if batch.inputs is None else len(batch.inputs), 1e3 * (decoded - start),
            None if batch.inputs is None else 1e3 * (inferred - decoded), 1e3 * (time.perf_counter() - start),
        )
        logger.info("batch: requests=%d inputs=%d rejected=%d", len(data),
                    0 if batch.inputs is None else len(batch.inputs), len(data) - len(batch.decoded))
        return answers

    def preprocess(self, data: list[dict]) -> Batch:
        """One row per request (TorchServe's `{"body": ...}`, form fields or gRPC inputs) -> Batch.

        Each request's body is found (`request_body`), decoded and validated (`decode`, `check_count`); a
        ClientError is kept as that request's entry. The decoded inputs are concatenated on the CPU.
        """
        requests = [self._decode_one(idx, row) for idx, row in enumerate(data)]
        decoded = [request for request in requests if isinstance(request, Decoded)]
        inputs = torch.cat([item.inputs for item in decoded]) if decoded else None
        return Batch(requests, inputs)

    def inference(self, batch: Batch) -> Batch:
        """Batch with `inputs` -> the same Batch with `outputs`: one forward over all inputs.

        The backend moves `inputs` to the worker's device (`self.device`) and returns (N, classes) float32 on the
        CPU, without autograd. `self.model` is that backend; call it rather than a module of your own.
        """
        if self.settings.test_delay_ms:
            time.sleep(self.settings.test_delay_ms / 1000)
        return replace(batch, outputs=self.model(batch.inputs))

    def postprocess(self, batch: Batch) -> list[bytes]:
        """Batch -> one answer per request, in order: `encode` of its output rows as JSON bytes, or its error.

        A refused request gets its ClientError's status (`context.set_response_status(code, phrase, idx)`) and
        body `{"code", "type", "message"}`; every answer gets `Content-Type: application/json`.
        """
        outputs = iter(batch.split_outputs())
        return [
            self._reject(idx, request) if isinstance(request, ClientError)
            else self._accept(idx, request, next(outputs))
            for idx, request in enumerate(batch.requests)
        ]

    def check_count(self, count: int) -> None:
        """Refuse a request of more than `max_inputs_per_request` inputs (subclasses may call it before decoding)."""
        limit = self.settings.max_inputs_per_request
        if count > limit:
            raise PayloadTooLarge(f"{count} inputs in one request; at most {limit} allowed")

    def request_content_type(self, idx: int) -> str | None:
        """The Content-Type header of request `idx` of the current batch (any letter case), or None."""
        headers = self.context.get_all_request_header(idx) or {}
        return next((value for key, value in headers.items()
                     if key.lower() == "content-type" and isinstance(value, str)), None)

    def _decode_one(self, idx: int, row: dict) -> Decoded | ClientError:
        try:
            item = self.decode(request_body(row, self.request_content_type(idx)))
            self.check_count(len(item.inputs))
        except ClientError as error:
            return error
        return item

    def _accept(self, idx: int, item: Decoded, output: torch.Tensor) -> bytes:
        self.context.set_response_content_type(idx, "application/json")
        return json.dumps(self.encode(output, item), separators=(",", ":")).encode()

    def _reject(self, idx: int, error: ClientError) -> bytes:
        self.context.set_response_status(error.status, error.phrase, idx)
        self.context.set_response_content_type(idx, "application/json")
        return json.dumps(error.to_body()).encode()
