"""What a model's forward returns, named, checked and split back per request.

A forward returns one of the forms PyTorch models have:
- a tensor (N, ...): one output, named "output";
- a dict of tensors (N, ...): outputs named by their keys (an ONNX model's outputs by their graph names);
- a tuple or list of tensors (N, ...): outputs named "0", "1", ... in order;
- a list of N dicts of tensors, one per input (torchvision's detection form): one output named "output" whose
  rows are those dicts.

`ModelOutputs` holds every output on the CPU, with the one the handler reads (`main`: `handler.output` when the
YAML names one, else the only output) and checks that each output has one row per model input. `split` cuts
them back per request, so each request is encoded from its own rows of every output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from handlers.errors import ModelConfigError

SINGLE = "output"  # the name of a model's only output (a tensor, or torchvision's list of per-input dicts)

Rows = torch.Tensor | list  # one output's rows: a tensor (n, ...) or a list of n per-input values


def name_outputs(raw: object) -> dict[str, Rows]:
    """A forward's result -> its outputs by name, tensors detached on the CPU (see the module docstring).

    TypeError names what the model returned when it is none of the supported forms."""
    if isinstance(raw, torch.Tensor):
        return {SINGLE: raw.detach().cpu()}
    if isinstance(raw, Mapping):
        return _named(raw)
    if isinstance(raw, Sequence) and raw:
        return _sequence_outputs(list(raw))
    raise TypeError(f"the model returned {type(raw).__name__}; expected a tensor, a dict, a tuple or list of "
                    "tensors, or a list of per-input dicts")


def _sequence_outputs(items: list) -> dict[str, Rows]:
    """A tuple/list result: positional tensors "0", "1", ..., or torchvision's per-input dicts as one output."""
    if all(isinstance(item, Mapping) for item in items):
        return {SINGLE: [_named(item) for item in items]}
    if all(isinstance(item, torch.Tensor) for item in items):
        return _named(dict(enumerate(items)))
    kinds = sorted({type(item).__name__ for item in items})
    raise TypeError(f"the model returned a sequence of {kinds}; expected tensors or per-input dicts of tensors")


def _named(mapping: Mapping) -> dict[str, torch.Tensor]:
    return {str(key): _rows(value, str(key)) for key, value in mapping.items()}


def _rows(value: object, name: str) -> Rows:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    raise TypeError(f"model output {name!r} is a {type(value).__name__}, not a tensor")


def pick_main(names: Sequence[str], selector: str | int | None) -> str:
    """The name of the output a handler reads: `selector` (`handler.output`: a name, or an index for a tuple),
    else the only output. ModelConfigError names the outputs the model has when the choice is ambiguous or
    `selector` names none of them."""
    names = list(names)
    if selector is None:
        if len(names) == 1:
            return names[0]
        raise ModelConfigError(f"the model has {len(names)} outputs {names}; set handler.output to the one "
                               "the handler reads")
    key = str(selector)
    if key not in names:
        raise ModelConfigError(f"handler.output = {selector!r}: the model has no such output; it has {names}")
    return key


@dataclass(frozen=True)
class ModelOutputs:
    """Every output of one forward (or one request's rows of it): `named` by output name, `main` the name of
    the one the handler reads. Tensors are on the CPU; each output has the same number of rows."""

    named: dict[str, Rows]
    main_name: str

    @classmethod
    def of(cls, raw: object, selector: str | int | None, rows: int) -> ModelOutputs:
        """A forward's result over `rows` inputs, checked: RuntimeError names an output with another count."""
        named = name_outputs(raw)
        for name, value in named.items():
            if len(value) != rows:
                raise RuntimeError(f"model output {name!r} has {len(value)} rows for {rows} inputs")
        return cls(named, pick_main(list(named), selector))

    @property
    def main(self) -> Rows:
        """The rows of the output the handler reads."""
        return self.named[self.main_name]

    def __getitem__(self, name: str) -> Rows:
        return self.named[name]

    def with_main(self, rows: Rows) -> ModelOutputs:
        """The same outputs with the handler's one replaced by `rows` (same row count), e.g. recalibrated."""
        if len(rows) != len(self.main):
            raise RuntimeError(f"replacing output {self.main_name!r}: {len(rows)} rows for {len(self.main)}")
        return ModelOutputs({**self.named, self.main_name: rows}, self.main_name)

    def split(self, counts: Sequence[int]) -> list[ModelOutputs]:
        """The rows of each request, in order: request i gets the next `counts[i]` rows of every output."""
        per_request: list[dict[str, Rows]] = [{} for _ in counts]
        for name, value in self.named.items():
            start = 0
            for index, count in enumerate(counts):
                per_request[index][name] = value[start:start + count]
                start += count
        return [ModelOutputs(named, self.main_name) for named in per_request]


def check_extra_outputs(outputs: ModelOutputs, names: Sequence[str]) -> None:
    """ModelConfigError at start when `handler.extra_outputs` names an output the model does not have."""
    missing = [name for name in names if name not in outputs.named]
    if missing:
        raise ModelConfigError(f"handler.extra_outputs {missing}: the model has no such output; it has "
                               f"{list(outputs.named)}")


def add_extra_outputs(answer: object, outputs: ModelOutputs, names: Sequence[str], per_item: bool,
                      many: bool) -> object:
    """`answer` with the outputs `names` (`handler.extra_outputs`) added, each under its name: per item (each
    answer of a list gets its own row; `many`: the answer is that list) or, for a per-request answer
    (`per_item` False), all n rows."""
    if not names:
        return answer
    rows = {name: plain_rows(outputs[name]) for name in names}
    if not per_item:
        return {**answer, **rows}
    answers = answer if many else [answer]
    merged = [{**one, **{name: values[i] for name, values in rows.items()}} for i, one in enumerate(answers)]
    return merged if many else merged[0]


def plain_rows(rows: Rows) -> list:
    """One output's rows as JSON-serialisable lists (floats rounded to 6 decimals)."""
    if isinstance(rows, torch.Tensor):
        values = rows.tolist()
        return _round(values) if rows.is_floating_point() else values
    return [{key: plain_rows(value) for key, value in row.items()} for row in rows]


def _round(values: object) -> object:
    return [_round(v) for v in values] if isinstance(values, list) else round(values, 6)
