"""Backends that run an `nn.Module` in this process: an ExportedProgram's module (`torch.export.load`) and an eager
model built from its source and state_dict, each optionally compiled with `torch.compile` (the `pt2.compile`
key of the model YAML, TorchServe 0.12's)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from handlers.backends.quiet import torch_internal_warnings_ignored
from handlers.config import CompileSettings
from handlers.errors import ModelConfigError

logger = logging.getLogger(__name__)


class ModuleBackend:
    """`module` on `device`, run under `torch.inference_mode()`; `name` says what it is."""

    def __init__(self, module: nn.Module, device: torch.device, name: str) -> None:
        self.module, self.device, self.name = module, device, name

    def __call__(self, *inputs: torch.Tensor) -> object:
        with torch.inference_mode():
            return self.module(*(tensor.to(self.device, non_blocking=True) for tensor in inputs))


class CompiledBackend(ModuleBackend):
    """`torch.compile(module, **pt2.compile options)`. Compiling happens at the first calls: the warm-up forward
    (one item) and, right after it, the same inputs doubled, so that the batch dimension is compiled dynamic
    before the first request (torch.compile specialises sizes 0 and 1). A compile failure fails the worker
    start (ModelConfigError) instead of serving uncompiled as TorchServe 0.12 does."""

    def __init__(self, module: nn.Module, device: torch.device, name: str, settings: CompileSettings) -> None:
        known = torch._dynamo.list_backends(exclude_tags=())
        if settings.backend not in known:
            raise ModelConfigError(f"pt2.compile.backend = {settings.backend!r}: not a torch.compile backend of this "
                                   f"torch; available: {', '.join(sorted(known))}")
        options = settings.model_dump(exclude={"enable"}, exclude_none=True)
        with torch_internal_warnings_ignored():  # torch.compile imports Inductor, which imports torch.utils.mkldnn
            compiled = torch.compile(module, **options)
        super().__init__(compiled, device, f"{name} + torch.compile({settings.backend})")
        self.warmed = False

    def __call__(self, *inputs: torch.Tensor) -> object:
        if self.warmed:
            return super().__call__(*inputs)
        try:
            with torch_internal_warnings_ignored():
                outputs = super().__call__(*inputs)
                super().__call__(*(torch.cat([tensor, tensor]) for tensor in inputs))
        except Exception as exc:
            raise ModelConfigError(f"pt2.compile: torch.compile failed at warm-up ({type(exc).__name__}: "
                                   f"{str(exc).splitlines()[0][:300]}); set pt2.compile.enable: false or another "
                                   "backend") from exc
        self.warmed = True
        return outputs


def exported_module(path: Path, device: torch.device) -> nn.Module:
    """The module of an ExportedProgram file (`torch.export.save`), its weights on `device`. The graph was
    exported in eval mode; tensors it creates with a fixed device stay on that device."""
    program = torch.export.load(str(path))
    return program.module().to(device)


def module_backend(module: nn.Module, device: torch.device, name: str,
                   compile_settings: CompileSettings | None) -> ModuleBackend:
    """The backend of an in-process module: compiled when the YAML's `pt2.compile.enable` says so."""
    if compile_settings is not None and compile_settings.enable:
        return CompiledBackend(module, device, name, compile_settings)
    return ModuleBackend(module, device, name)
