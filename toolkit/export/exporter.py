"""Export a module in one serving format and prove it: the written file is loaded by the backend a worker would
choose for it (`handlers.backends.load_backend`, by what the file is) and its outputs must equal the eager
module's on random inputs at batch sizes 1 and 8 (every output, by the names the handlers give them), within
`atol`. Files of an export that fails its check are deleted."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from handlers.backends import ModelKind, identify, load_backend
from handlers.backends.quiet import torch_internal_warnings_ignored
from handlers.outputs import name_outputs
from toolkit.export.diagnose import explain
from toolkit.export.errors import ExportFailedError, ExportUsageError
from toolkit.export.formats import EXPORT_BATCH, WRITERS, Format
from toolkit.export.inputs import InputSpec, random_batch

CHECK_BATCHES = (1, 8)
DEFAULT_ATOL = 1e-4


@dataclass(frozen=True)
class ExportRequest:
    """What to export: the eval-mode module, one InputSpec per positional input, the format, where, for which
    device, and the largest abs difference from eager the check accepts."""

    model: nn.Module
    inputs: tuple[InputSpec, ...]
    format: Format
    out: Path
    device: torch.device = torch.device("cpu")
    atol: float = DEFAULT_ATOL


@dataclass(frozen=True)
class ExportReport:
    """What was written and measured: files, what the file is and the backend serving it, the export's wall
    time (s), the files' size (bytes) and the max abs difference from eager per checked batch size."""

    format: Format
    files: tuple[Path, ...]
    kind: ModelKind
    backend: str
    seconds: float
    size_bytes: int
    max_abs_diff: dict[int, float]

    def summary(self, atol: float) -> str:
        diffs = ", ".join(f"batch {b}: {d:.2e}" for b, d in self.max_abs_diff.items())
        return (f"wrote {', '.join(map(str, self.files))} ({self.kind}, {self.size_bytes / 1e6:.2f} MB, "
                f"{self.seconds:.1f} s); served by {self.backend}, max abs diff from eager {diffs} (atol {atol:g})")


def export_model(request: ExportRequest) -> ExportReport:
    """Write `request.out` and check it against eager (see the module docstring). ExportUsageError for inputs
    the model refuses or outputs the handlers cannot read, ExportFailedError (one line: cause and fix) for an
    export torch refuses or one that disagrees with eager."""
    model = request.model.to(request.device)
    example = random_batch(request.inputs, EXPORT_BATCH, seed=0, device=request.device)
    names = output_names(model, example)
    request.out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        files = WRITERS[request.format](model, example, request.out, request.device, names)
    except Exception as exc:  # torch's exporters raise many types; explain() names the cause
        raise ExportFailedError(explain(exc, request.format)) from exc
    seconds = time.perf_counter() - start
    try:
        kind, backend, diffs = check_against_eager(model, request)
    except Exception:
        for path in (request.out, request.out.with_name(request.out.name + ".data")):
            path.unlink(missing_ok=True)
        raise
    return ExportReport(request.format, tuple(files), kind, backend, seconds,
                        sum(path.stat().st_size for path in files), diffs)


def output_names(model: nn.Module, example: tuple[torch.Tensor, ...]) -> list[str]:
    """The names the handlers give the model's outputs on `example`; ExportUsageError when the model refuses the
    example inputs or returns something the handlers cannot read."""
    try:
        with torch.inference_mode():
            raw = model(*example)
    except Exception as exc:
        shapes = ", ".join(f"{str(t.dtype).removeprefix('torch.')}{list(t.shape)}" for t in example)
        raise ExportUsageError(f"the model refuses the example inputs ({shapes}, batch first): {type(exc).__name__}: "
                               f"{str(exc).splitlines()[0][:200]}; give one --example-input per positional input, "
                               "its shape per item without the batch dimension") from None
    try:
        return list(name_outputs(raw))
    except TypeError as exc:
        raise ExportUsageError(f"{exc}: the handlers read those forms") from None


def check_against_eager(model: nn.Module, request: ExportRequest) -> tuple[ModelKind, str, dict[int, float]]:
    """Load the written file as a worker would and compare it with `model` at each CHECK_BATCHES size."""
    with torch_internal_warnings_ignored():
        backend = load_backend(request.out, request.device, threads=torch.get_num_threads())
    diffs = {}
    for batch in CHECK_BATCHES:
        inputs = random_batch(request.inputs, batch, seed=batch, device=request.device)
        with torch.inference_mode():
            expected = model(*inputs)
        diffs[batch] = max_abs_diff(expected, backend(*inputs), batch, request.atol)
    return identify(request.out).kind, backend.name, diffs


def max_abs_diff(expected: object, actual: object, batch: int, atol: float) -> float:
    """The largest abs difference over every output; ExportFailedError when the outputs' names or shapes differ
    or a difference exceeds `atol`."""
    want, got = name_outputs(expected), name_outputs(actual)
    if list(want) != list(got):
        raise ExportFailedError(f"the export's outputs {list(got)} are not the model's {list(want)}")
    worst = 0.0
    for name in want:
        a, b = want[name], got[name]
        if a.shape != b.shape:
            raise ExportFailedError(f"output {name!r} at batch {batch}: shape {list(b.shape)}, eager {list(a.shape)}")
        diff = float((a.double() - b.double()).abs().max()) if a.numel() else 0.0
        if not diff <= atol:
            raise ExportFailedError(f"output {name!r} at batch {batch} differs from eager by {diff:.3g} > atol "
                                    f"{atol:g}: the export does not compute what the model does (a random op, or "
                                    "a precision change); raise --atol only if that difference is expected")
        worst = max(worst, diff)
    return worst


def check_out_path(fmt: Format, out: Path) -> None:
    """AOTInductor packages must be named `*.pt2` (aoti_compile_and_package's rule)."""
    if fmt is Format.AOTI and out.suffix != ".pt2":
        raise ExportUsageError(f"--out {out}: an AOTInductor package must end in .pt2")


def check_device(name: str) -> torch.device:
    """`--device cpu|cuda` as a torch device; ExportUsageError for CUDA without a GPU."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ExportUsageError(f"--device cuda: this torch ({torch.__version__}) sees no CUDA device; export for "
                               "CUDA on a machine with a GPU and a CUDA build of torch")
    return torch.device(name)


def parse_inputs(texts: Sequence[str]) -> tuple[InputSpec, ...]:
    return tuple(InputSpec.parse(text) for text in texts)
