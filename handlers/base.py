"""The base handler: one typed contract for every model we serve.

    decode one request -> validate -> collate one batch tensor -> infer -> one JSON answer per request

Subclasses implement `decode` (one request body -> `Decoded`, raising `ClientError` for client mistakes),
`encode` (that request's rows of model output -> a JSON-serialisable answer) and `example_input`.
A request that fails decoding gets its own 4xx and JSON error body; its batch-mates are still inferred.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from ts.torch_handler.base_handler import BaseHandler

from handlers.backends import Backend, load_backend
from handlers.config import ModelYaml, worker_config
from handlers.errors import ClientError, PayloadTooLarge
from handlers.worker import apply_threads, choose_threads, load_labels, request_body, select_device

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


class ServingHandler(BaseHandler):
    """Base of our handlers. Subclasses define decode, encode and example_input."""

    config: ModelYaml
    model: Backend
    labels: list[str] | None

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

    def decode(self, body: object) -> Decoded:
        """One request body -> Decoded. Raise a ClientError subclass for anything the client must fix."""
        raise NotImplementedError

    def encode(self, outputs: torch.Tensor, item: Decoded) -> object:
        """(n, classes) model output rows of one request -> its JSON-serialisable answer."""
        raise NotImplementedError

    def example_input(self) -> torch.Tensor:
        """A valid (1, *input_shape) batch for warm-up."""
        raise NotImplementedError

    def handle(self, data: list[dict], context) -> list[bytes]:
        """Answer every request of the batch, in order: JSON bytes, with a 4xx status for bad ones."""
        self.context = context
        items = [self._decode_one(row) for row in data]
        decoded = [item for item in items if isinstance(item, Decoded)]
        outputs = iter(self._infer(decoded))
        answers = [
            self._reject(idx, item) if isinstance(item, ClientError) else self._accept(idx, item, next(outputs))
            for idx, item in enumerate(items)
        ]
        assert len(answers) == len(data), f"expected {len(data)} answers, got {len(answers)}"
        logger.info("batch: requests=%d inputs=%d rejected=%d", len(data),
                    sum(len(d.inputs) for d in decoded), len(data) - len(decoded))
        return answers

    def check_count(self, count: int) -> None:
        """Refuse a request of more than `max_inputs_per_request` inputs (subclasses may call it before decoding)."""
        limit = self.settings.max_inputs_per_request
        if count > limit:
            raise PayloadTooLarge(f"{count} inputs in one request; at most {limit} allowed")

    def _decode_one(self, row: dict) -> Decoded | ClientError:
        try:
            item = self.decode(request_body(row))
            self.check_count(len(item.inputs))
        except ClientError as error:
            return error
        return item

    def _infer(self, decoded: list[Decoded]) -> list[torch.Tensor]:
        """One forward over the inputs of every good request; the output rows split back per request."""
        if not decoded:
            return []
        batch = torch.cat([item.inputs for item in decoded])
        if self.settings.test_delay_ms:
            time.sleep(self.settings.test_delay_ms / 1000)
        output = self.model(batch)
        assert len(output) == len(batch), f"expected {len(batch)} output rows, got {len(output)}"
        return list(torch.split(output, [len(item.inputs) for item in decoded]))

    def _accept(self, idx: int, item: Decoded, output: torch.Tensor) -> bytes:
        self.context.set_response_content_type(idx, "application/json")
        return json.dumps(self.encode(output, item), separators=(",", ":")).encode()

    def _reject(self, idx: int, error: ClientError) -> bytes:
        self.context.set_response_status(error.status, error.phrase, idx)
        self.context.set_response_content_type(idx, "application/json")
        return json.dumps(error.to_body()).encode()
