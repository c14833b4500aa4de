"""Writing a module in each serving format, with a dynamic batch dimension (dimension 0 of every input, one
shared size):

    aoti         torch.export -> torch._inductor.aoti_compile_and_package: native code for one device kind (.pt2)
    exported     torch.export -> torch.export.save: the ExportedProgram, portable, no compiler needed (.pt2)
    torchscript  torch.jit.script (legacy: deprecated by PyTorch, kept for existing archives)
    onnx         torch.onnx.export (dynamo): the graph in <out>, its weights in <out>.data

Each writer returns the files it wrote. Exceptions are torch's own; `toolkit.export.diagnose` names them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from handlers.backends.quiet import torch_internal_warnings_ignored
from toolkit.export.torchscript import ONNX_OPSET, save_torchscript, to_torchscript

EXPORT_BATCH = 2  # the example batch size: torch.export specialises sizes 0 and 1
Example = tuple[torch.Tensor, ...]


class Format(enum.StrEnum):
    AOTI = "aoti"
    EXPORTED = "exported"
    TORCHSCRIPT = "torchscript"
    ONNX = "onnx"


def dynamic_batch(count: int) -> tuple[dict[int, torch.export.Dim], ...]:
    """torch.export's dynamic_shapes for `count` positional inputs sharing one batch dimension."""
    batch = torch.export.Dim("batch", min=1)
    return tuple({0: batch} for _ in range(count))


def export_program(model: nn.Module, example: Example) -> torch.export.ExportedProgram:
    """`torch.export.export` of `model` on `example` (batch EXPORT_BATCH) with a dynamic batch dimension."""
    with torch_internal_warnings_ignored():
        return torch.export.export(model, example, dynamic_shapes=dynamic_batch(len(example)))


def write_exported(model: nn.Module, example: Example, out: Path, device: torch.device,
                   output_names: Sequence[str]) -> list[Path]:
    torch.export.save(export_program(model, example), str(out))
    return [out]


def write_aoti(model: nn.Module, example: Example, out: Path, device: torch.device,
               output_names: Sequence[str]) -> list[Path]:
    """Compiled for `device`'s kind. On the CPU the kernels take their thread count from the worker at run time
    (`cpp.dynamic_threads`) instead of the count of the machine that compiled them."""
    program = export_program(model, example)
    configs = {"cpp.dynamic_threads": True} if device.type == "cpu" else {}
    with torch_internal_warnings_ignored():
        torch._inductor.aoti_compile_and_package(program, package_path=str(out), inductor_configs=configs)
    return [out]


def write_torchscript(model: nn.Module, example: Example, out: Path, device: torch.device,
                      output_names: Sequence[str]) -> list[Path]:
    save_torchscript(to_torchscript(model), out)
    return [out]


def write_onnx(model: nn.Module, example: Example, out: Path, device: torch.device,
               output_names: Sequence[str]) -> list[Path]:
    """Inputs named `input` (or `input_0`, `input_1`, ...), outputs by the names the handlers give them
    (`output`, a dict's keys, a tuple's `0`, `1`, ...); weights in `<out>.data`, torch.onnx.export's default."""
    input_names = ["input"] if len(example) == 1 else [f"input_{i}" for i in range(len(example))]
    with torch_internal_warnings_ignored():
        torch.onnx.export(model, example, str(out), input_names=input_names, output_names=list(output_names),
                          dynamic_shapes=dynamic_batch(len(example)), opset_version=ONNX_OPSET, dynamo=True,
                          external_data=True, verbose=False)
    data = out.with_name(out.name + ".data")
    return [out, data] if data.is_file() else [out]


Writer = Callable[[nn.Module, Example, Path, torch.device, Sequence[str]], list[Path]]
WRITERS: dict[Format, Writer] = {
    Format.AOTI: write_aoti,
    Format.EXPORTED: write_exported,
    Format.TORCHSCRIPT: write_torchscript,
    Format.ONNX: write_onnx,
}
