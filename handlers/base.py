"""The base handler: one typed contract for every model we serve, on TorchServe's own hooks.

    handle(data, context) = postprocess(inference(preprocess(data)))

    preprocess   one row per request -> Batch: each request claimed by a protocol and decoded into `Decoded`
                 (`handlers.protocols.Speaks.decode`), a client mistake kept as that request's ClientError;
                 the decoded requests' inputs collated into the model's batch inputs (`collate`)
    inference    Batch -> Batch with `outputs`: one batched forward of the model on the worker's device
                 (`forward`), every output named and checked (`handlers.outputs.ModelOutputs`)
    postprocess  Batch -> one answer per request, in order (`Speaks.encode`): its protocol encodes it from
                 its own rows of every output, or its ClientError in that protocol's error form

Subclasses implement `decode` (one TorchServe body -> `Decoded`, raising `ClientError` for client mistakes),
`encode` (that request's `ModelOutputs` -> a JSON-serialisable answer) and `example_input`; these are abstract,
so a handler missing one fails at instantiation (the archive preflight), not on its first request. A handler
lists the other protocols it speaks in `protocols` (e.g. `handlers.oip.OPEN_INFERENCE`, which needs
`decode_oip`/`encode_oip`); a listed protocol whose methods are missing fails at `initialize`. A TorchServe user
may override `preprocess`, `inference` or `postprocess` as with any TorchServe handler, with the inputs and
outputs their docstrings state. Anything raised outside a request's decode fails the whole batch (TorchServe
answers every request of it with 503).
"""

from __future__ import annotations

import abc
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import ClassVar

import torch
from pydantic import BaseModel
from ts.torch_handler.base_handler import BaseHandler

from handlers.backends import Backend
from handlers.config import ModelYaml, parse_options, worker_config
from handlers.errors import ClientError, PayloadTooLarge
from handlers.manifest import model_version
from handlers.metrics import HandlerMetrics
from handlers.outputs import ModelOutputs, check_extra_outputs
from handlers.protocols import Entry, Protocol, RequestInfo, Speaks
from handlers.worker import set_up

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decoded:
    """One request after decode and validation.

    `inputs`: the model's inputs for this request's n items: one tensor (n, ...) for a model of one input, or a
    tuple of them, one per positional model input (e.g. token ids and attention mask), each with n rows;
    `many`: the client sent a list and gets a list of n answers back; `options`: per-request settings the
    handler's `encode` reads (e.g. `return_probabilities`).
    """

    inputs: torch.Tensor | tuple[torch.Tensor, ...]
    many: bool = False
    options: Mapping[str, object] = field(default_factory=dict)

    @property
    def tensors(self) -> tuple[torch.Tensor, ...]:
        """The positional model inputs, as a tuple."""
        return self.inputs if isinstance(self.inputs, tuple) else (self.inputs,)

    @property
    def count(self) -> int:
        """n: the items (rows) this request sends through the model."""
        return len(self.tensors[0])


@dataclass(frozen=True)
class Batch:
    """One TorchServe batch on its way through preprocess -> inference -> postprocess.

    `entries`: one per request of the batch, in order (see `Entry`).
    `inputs`: the model's positional inputs for every decoded request, collated in request order (N rows
        each, N = the sum of their n), on the CPU; None when every request was refused.
    `outputs`: set by `inference`: every model output with N rows, row i from the inputs' row i.
    """

    entries: list[Entry]
    inputs: tuple[torch.Tensor, ...] | None = None
    outputs: ModelOutputs | None = None

    @property
    def decoded(self) -> list[Decoded]:
        """The requests that decoded, in order (those whose rows make up `inputs` and `outputs`)."""
        return [entry.result for entry in self.entries if isinstance(entry.result, Decoded)]

    @property
    def results(self) -> list[Decoded | ClientError]:
        """Each request's Decoded or ClientError, in order."""
        return [entry.result for entry in self.entries]

    def with_outputs(self, raw: object, selector: str | int | None = None) -> Batch:
        """This batch with `outputs` from a forward's result over its inputs (named, one row per input checked;
        `selector`: the output the handler reads when there are several, `handler.output`)."""
        return replace(self, outputs=ModelOutputs.of(raw, selector, len(self.inputs[0])))

    def split_outputs(self) -> list[ModelOutputs]:
        """`outputs` split back per decoded request, in order."""
        if self.inputs is None:
            return []
        if self.outputs is None:
            raise RuntimeError("postprocess got a batch without outputs: inference did not run")
        return self.outputs.split([item.count for item in self.decoded])


class ServingHandler(BaseHandler, abc.ABC):
    """Base of our handlers. Subclasses define decode, encode and example_input (abstract methods), and list
    the protocols they speak besides TorchServe's own bodies in `protocols`."""

    protocols: ClassVar[tuple[Protocol, ...]] = ()
    # The `handler:` section this handler reads (required in its YAML), and the pydantic model of its
    # `handler.options` (None: it takes none).
    section: ClassVar[str | None] = None
    options_model: ClassVar[type[BaseModel] | None] = None
    # Whether an answer covers one item (a list of answers for a list) or a whole request (tabular rows).
    answer_per_item: ClassVar[bool] = True

    config: ModelYaml
    model: Backend
    labels: list[str] | None
    handler_metrics: HandlerMetrics | None = None  # at the first batch: an engine may set the sink after load

    def initialize(self, context) -> None:
        """Validate the model config, the handler's settings section and options, and the protocols; pick
        device and threads, load model and labels, warm up (the first request must not pay for lazy init)."""
        self.context = context
        self.configure(worker_config(context.model_yaml_config))
        self.model_name, self.model_version = context.model_name, model_version(context.manifest)
        setup = set_up(context, self.config)
        self.device, self.threads, self.model, self.labels = setup.device, setup.threads, setup.model, setup.labels
        self.check_outputs(self.warm_up())
        self.initialized = True
        logger.info("%s ready: device=%s threads=%d backend=%s", context.model_name, self.device,
                    self.threads, self.model.name)

    def configure(self, config: ModelYaml) -> None:
        """Take the validated model YAML: the settings section this handler reads (`section`), its options
        (`options_model`), and the protocols it speaks (each checks the methods it needs). ModelConfigError
        names what is missing or wrong; nothing is loaded yet."""
        self.config, self.settings = config, config.handler
        if self.section is not None:
            self.settings.section(self.section)
        self.options = parse_options(self.options_model, self.settings.options, type(self).__name__)
        self.speaks = Speaks.checked(self, self.protocols)

    def warm_up(self) -> ModelOutputs:
        """One forward of `example_input`; its outputs, named and checked (`handler.output` must name one)."""
        example = self.example_input()
        inputs = example if isinstance(example, tuple) else (example,)
        outputs = ModelOutputs.of(self.forward(inputs), self.settings.output, len(inputs[0]))
        check_extra_outputs(outputs, self.settings.extra_outputs)
        return outputs

    def check_outputs(self, outputs: ModelOutputs) -> None:
        """Refuse, at start, a model whose warm-up outputs this handler cannot read (ModelConfigError). The
        classifiers check that the output has one column per label."""

    @abc.abstractmethod
    def decode(self, body: object) -> Decoded:
        """One request body (bytes, str or parsed JSON, as TorchServe hands it over) -> Decoded.

        Raise a ClientError subclass for anything the client must fix: that request alone is refused with it.
        """

    @abc.abstractmethod
    def encode(self, outputs: ModelOutputs, item: Decoded) -> object:
        """One request's rows of every model output (`outputs.main`: the output the handler reads, n rows for
        n = item.count) -> its JSON-serialisable answer."""

    @abc.abstractmethod
    def example_input(self) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """Valid model inputs of one item (each (1, ...)) for the warm-up forward of `initialize`."""

    def handle(self, data: list[dict], context) -> list[bytes]:
        """TorchServe's entry point for one batch: `postprocess(inference(preprocess(data)))`.

        `data` holds one row per request, as TorchServe's worker builds it; the result is one answer (bytes)
        per request, in order. `inference` is skipped when every request of the batch was refused. What the
        batch did goes to the engine's metrics sink (handlers.metrics).
        """
        self.context = context
        if self.handler_metrics is None:
            self.handler_metrics = HandlerMetrics.for_context(context, self.config.batch_size)
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
        inputs = 0 if batch.inputs is None else len(batch.inputs[0])
        self.handler_metrics.batch(batch.results, inputs, 1e3 * (decoded - start),
                                   None if batch.inputs is None else 1e3 * (inferred - decoded),
                                   1e3 * (time.perf_counter() - start))
        logger.info("batch: requests=%d inputs=%d rejected=%d", len(data), inputs, len(data) - len(batch.decoded))
        return answers

    def preprocess(self, data: list[dict]) -> Batch:
        """One row per request (TorchServe's `{"body": ...}`, form fields or gRPC inputs) -> Batch: each request
        decoded by the protocol that claims it (`Speaks.decode`); the decoded ones collated on the CPU."""
        entries = [self.speaks.decode(self, RequestInfo.of(self.context, idx, row)) for idx, row in enumerate(data)]
        batch = Batch(entries)
        return replace(batch, inputs=self.collate(batch.decoded)) if batch.decoded else batch

    def inference(self, batch: Batch) -> Batch:
        """Batch with `inputs` -> the same Batch with `outputs`: one forward over all inputs (`forward`),
        every output checked to have one row per input."""
        return batch.with_outputs(self.forward(batch.inputs), self.settings.output)

    def postprocess(self, batch: Batch) -> list[bytes]:
        """Batch -> one answer per request, in order, each from its protocol (`Speaks.encode`)."""
        outputs = iter(batch.split_outputs())
        return [self.speaks.encode(self, entry, None if isinstance(entry.result, ClientError) else next(outputs))
                for entry in batch.entries]

    # ---- the batch around the forward ---------------------------------------------------------------------

    def collate(self, items: Sequence[Decoded]) -> tuple[torch.Tensor, ...]:
        """The decoded requests' inputs -> the model's batch inputs: each positional input concatenated in
        request order. A handler whose requests need padding to a common size overrides this."""
        return tuple(torch.cat(parts) for parts in zip(*(item.tensors for item in items), strict=True))

    def forward(self, inputs: tuple[torch.Tensor, ...]) -> object:
        """One forward of the backend (`self.model`) on the worker's device; outputs back on the CPU."""
        return self.model(*inputs)

    def check_count(self, count: int) -> None:
        """Refuse a request of more than `max_inputs_per_request` inputs (subclasses may call it before decoding)."""
        limit = self.settings.max_inputs_per_request
        if count > limit:
            raise PayloadTooLarge(f"{count} inputs in one request; at most {limit} allowed")
