"""Export trained modules to TorchScript and ONNX, and verify the exports against the eager module.

Every check raises ``ExportCheckError`` (never a warning) when an export disagrees, so build scripts
fail loudly. ONNX files follow one contract: input ``"input"``, output ``"output"``, batch axis 0
dynamic and named ``"batch"``, opset ``ONNX_OPSET``.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from handlers.backends.torchscript import jit_deprecation_ignored
from toolkit.export.architectures import INPUT_SHAPES, build_from_state_dict, create

if TYPE_CHECKING:
    import onnx

ONNX_OPSET = 18
TS_RTOL = 1e-5
TS_ATOL = 1e-6
ONNX_MAX_ABS_DIFF = 1e-4


class ExportCheckError(RuntimeError):
    """An exported model's outputs differ from the reference beyond tolerance, or its I/O is wrong."""


class CheckpointError(ValueError):
    """A checkpoint file cannot be read as a plain ``state_dict``."""


def to_torchscript(model: nn.Module) -> torch.jit.ScriptModule:
    """``torch.jit.script`` of ``model`` switched to eval mode."""
    with jit_deprecation_ignored():
        return torch.jit.script(model.eval())


def save_torchscript(module: torch.jit.ScriptModule, path: Path) -> None:
    """Write ``module`` to ``path`` (parent directories created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with jit_deprecation_ignored():
        torch.jit.save(module, str(path))


def load_torchscript(path: Path) -> torch.jit.ScriptModule:
    """Load a TorchScript file onto the CPU, in eval mode."""
    with jit_deprecation_ignored():
        return torch.jit.load(str(path), map_location="cpu").eval()


def predict(module: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Run ``module`` on ``x`` in batches without gradients; returns the concatenated outputs."""
    with torch.inference_mode():
        outputs = [module(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    return torch.cat(outputs) if outputs else torch.empty(0)


def check_torchscript(eager: nn.Module, scripted: nn.Module, x: torch.Tensor) -> float:
    """Compare outputs on ``x``; returns the max abs difference or raises ``ExportCheckError``."""
    expected = predict(eager.eval(), x)
    actual = predict(scripted, x)
    diff = float((expected - actual).abs().max()) if len(x) else 0.0
    if expected.shape != actual.shape or not torch.allclose(actual, expected, rtol=TS_RTOL, atol=TS_ATOL):
        raise ExportCheckError(
            f"TorchScript outputs differ from eager: shapes {tuple(actual.shape)} vs "
            f"{tuple(expected.shape)}, max abs diff {diff:.3g} (rtol={TS_RTOL}, atol={TS_ATOL})"
        )
    return diff


def check_optimized(eager: nn.Module, scripted: torch.jit.ScriptModule, x: torch.Tensor) -> float:
    """The forward the CPU workers serve (``handlers.backends.optimize_torchscript``: ``scripted`` frozen +
    ``torch.jit.optimize_for_inference``) against eager on ``x``, with the ONNX tolerance
    (``ONNX_MAX_ABS_DIFF``: MKL-DNN convolutions reorder float sums as ONNX Runtime does). Returns the max
    abs difference or raises ``ExportCheckError``."""
    from handlers.backends.torchscript import optimize_torchscript

    expected = predict(eager.eval(), x)
    actual = predict(optimize_torchscript(scripted), x)
    diff = float((expected - actual).abs().max()) if len(x) else 0.0
    if expected.shape != actual.shape or diff > ONNX_MAX_ABS_DIFF:
        raise ExportCheckError(
            f"frozen + optimize_for_inference outputs differ from eager: shapes {tuple(actual.shape)} vs "
            f"{tuple(expected.shape)}, max abs diff {diff:.3g} (limit {ONNX_MAX_ABS_DIFF})"
        )
    return diff


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """Export ``model`` (eval mode) with the dynamo exporter; ``example`` needs batch size >= 2."""
    if example.shape[0] < 2:
        raise ValueError("the ONNX example input needs batch size >= 2 (size 1 gets specialised)")
    path.parent.mkdir(parents=True, exist_ok=True)
    program = torch.onnx.export(
        model.eval(),
        (example,),
        input_names=["input"],
        output_names=["output"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        opset_version=ONNX_OPSET,
        dynamo=True,
        verbose=False,
    )
    if program is None:
        raise ExportCheckError("torch.onnx.export returned no program")
    program.save(str(path))


def check_onnx(path: Path, x: np.ndarray, reference: np.ndarray) -> float:
    """Validate the ONNX file and compare onnxruntime (CPU) outputs on ``x`` with ``reference``.

    Returns the max abs difference; raises ``ExportCheckError`` above ``ONNX_MAX_ABS_DIFF`` or when
    the model's input/output names or batch axis do not follow the contract.
    """
    import onnx
    import onnxruntime as ort

    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    _check_onnx_io(proto)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    actual = session.run(["output"], {"input": np.ascontiguousarray(x, dtype=np.float32)})[0]
    if actual.shape != reference.shape:
        raise ExportCheckError(f"ONNX output shape {actual.shape} != reference {reference.shape}")
    diff = float(np.abs(actual - reference).max()) if actual.size else 0.0
    if not diff <= ONNX_MAX_ABS_DIFF:
        raise ExportCheckError(f"ONNX outputs differ: max abs diff {diff:.3g} > {ONNX_MAX_ABS_DIFF}")
    return diff


def _check_onnx_io(proto: onnx.ModelProto) -> None:
    """Require one input "input" and one output "output", both with dim 0 named "batch"."""
    graph = proto.graph
    for kind, values, name in (("input", graph.input, "input"), ("output", graph.output, "output")):
        names = [v.name for v in values]
        if names != [name]:
            raise ExportCheckError(f"ONNX {kind} names {names}, expected [{name!r}]")
        dims = values[0].type.tensor_type.shape.dim
        if not dims or dims[0].dim_param != "batch":
            raise ExportCheckError(f"ONNX {kind} {name!r} has no dynamic axis 0 named 'batch'")


@dataclass(frozen=True)
class ExportReport:
    """Result of ``export_checkpoint``: written paths and max abs differences found by the checks."""

    torchscript_path: Path
    torchscript_max_abs_diff: float
    onnx_path: Path | None = None
    onnx_max_abs_diff: float | None = None


def load_state_dict(checkpoint: Path) -> dict[str, torch.Tensor]:
    """Read a ``torch.save(model.state_dict())`` file with ``weights_only=True`` onto the CPU."""
    try:
        state = torch.load(str(checkpoint), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise CheckpointError(
            f"{checkpoint}: not a weights-only state_dict checkpoint; save one with "
            f"torch.save(model.state_dict(), path) ({exc})"
        ) from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{checkpoint}: expected a dict of tensors (model.state_dict()), got {type(state)}")
    return state


def random_inputs(arch: str, model: nn.Module, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` random float32 inputs shaped for ``arch``; tabular ones follow the model's mean/std."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((n, *INPUT_SHAPES[arch]), generator=generator)
    mean, std = getattr(model, "mean", None), getattr(model, "std", None)
    if isinstance(mean, torch.Tensor) and isinstance(std, torch.Tensor):
        x = mean + std * x
    return x


def export_checkpoint(arch: str, checkpoint: Path, out: Path, onnx_out: Path | None = None,
                      n_check: int = 32, seed: int = 0) -> ExportReport:
    """Turn a ``state_dict`` checkpoint of ``arch`` into TorchScript at ``out`` (and ONNX if asked).

    The saved TorchScript is reloaded and must match the eager module on ``n_check`` random inputs;
    the ONNX model must match the TorchScript outputs; files that fail a check are deleted.
    Raises ``UnknownArchitectureError``, ``CheckpointError``, ``StateDictMismatchError``,
    ``ExportCheckError``, or ``ValueError`` for ``n_check < 2``.
    """
    if n_check < 2:
        raise ValueError(f"n_check must be >= 2, got {n_check}")
    create(arch)  # unknown architecture -> clear error before touching the file
    model = build_from_state_dict(arch, load_state_dict(checkpoint))
    x = random_inputs(arch, model, n_check, seed)
    try:
        save_torchscript(to_torchscript(model), out)
        scripted = load_torchscript(out)
        ts_diff = check_torchscript(model, scripted, x)
        if onnx_out is None:
            return ExportReport(out, ts_diff)
        export_onnx(model, x[:2], onnx_out)
        onnx_diff = check_onnx(onnx_out, x.numpy(), predict(scripted, x).numpy())
    except ExportCheckError:
        for path in (out, onnx_out):
            if path is not None:
                path.unlink(missing_ok=True)
        raise
    return ExportReport(out, ts_diff, onnx_out, onnx_diff)
