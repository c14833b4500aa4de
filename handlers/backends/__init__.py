"""Inference backends, chosen by what the model file is (read from its contents, never its suffix:
`handlers.backends.sniff`):

    AOTInductor package .pt2   AotiBackend        torch._inductor.aoti_load_package, compiled for the worker's device
    ExportedProgram .pt2       ModuleBackend      torch.export.load(...).module()            [pt2.compile]
    TorchScript                TorchScriptBackend frozen + optimize_for_inference on the CPU (legacy format)
    ONNX / ORT format          OnnxBackend        ONNX Runtime, external data read from beside the file
    state_dict + model source  ModuleBackend      eager, as TorchServe has it: archive.model_source +
                                                  handler.model_factory                       [pt2.compile]

One module per backend: aoti.py, module.py (ExportedProgram and eager), eager.py (the model source and its
factory), torchscript.py, onnxrt.py; sniff.py tells the kinds apart, quiet.py keeps torch.jit's deprecation
warning to the TorchScript path.

A backend is called with the model's positional inputs, each a batch tensor (N, ...), and returns what the
model returns (a tensor, a dict, or a tuple/list of tensors with N rows; `handlers.outputs` names them), without
autograd. The inputs may arrive on any device; the backend moves them to its own. Any other file (an eager
pickle, a state_dict without a model source, something else) is refused at worker start, so at the archive
preflight, with what it is and what to do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from handlers.backends.aoti import AotiBackend, check_aoti_device
from handlers.backends.module import ModuleBackend, exported_module, module_backend
from handlers.backends.onnxrt import OnnxBackend
from handlers.backends.quiet import jit_deprecation_ignored
from handlers.backends.sniff import ModelFile, ModelKind, identify
from handlers.backends.torchscript import TorchScriptBackend, optimize_torchscript
from handlers.config import CompileSettings, ModelYaml
from handlers.errors import ModelConfigError

__all__ = ["AotiBackend", "Backend", "EagerSource", "LoadOptions", "ModelFile", "ModelKind", "ModuleBackend",
           "OnnxBackend", "TorchScriptBackend", "check_aoti_device", "identify", "jit_deprecation_ignored",
           "load_archive_model", "load_backend", "optimize_torchscript"]

logger = logging.getLogger(__name__)
EXPORT_HINT = "export it with `python -m toolkit.export --model your_model.py:FACTORY --format aoti` (docs/export.md)"


class Backend(Protocol):
    """Callable model: positional inputs (N, ...) -> the model's outputs (N rows each)."""

    name: str

    def __call__(self, *inputs: torch.Tensor) -> object: ...


@dataclass(frozen=True)
class EagerSource:
    """An eager model's code: its source file and the factory in it that returns the nn.Module."""

    source: Path
    factory: str


@dataclass(frozen=True)
class LoadOptions:
    """What the model YAML adds to the model file: the eager model's code, torch.compile settings."""

    eager: EagerSource | None = None
    compile: CompileSettings | None = None


def load_backend(path: Path, device: torch.device, threads: int, options: LoadOptions | None = None) -> Backend:
    """The backend serving `path` on `device` (`threads`: ONNX Runtime's intra-op threads; torch's are the
    worker's), chosen by what the file is. ModelConfigError (one line: what the file is, what to do) for a file
    no backend serves or options that do not apply to it."""
    options = options or LoadOptions()
    model_file = identify(path)
    _check_options(model_file, options)
    backend = _open(model_file, device, threads, options)
    logger.info("model file %s: %s served by %s on %s", path.name, model_file.kind, backend.name, device)
    return backend


def _open(model_file: ModelFile, device: torch.device, threads: int, options: LoadOptions) -> Backend:
    kind, path = model_file.kind, model_file.path
    if kind is ModelKind.AOTI:
        return AotiBackend(path, device)
    if kind is ModelKind.EXPORTED:
        return module_backend(exported_module(path, device), device, "exported", options.compile)
    if kind is ModelKind.TORCHSCRIPT:
        return TorchScriptBackend(path, device)
    if kind in (ModelKind.ONNX, ModelKind.ORT):
        return OnnxBackend(path, device, threads)
    if kind is ModelKind.STATE_DICT and options.eager is not None:
        from handlers.backends.eager import eager_module

        module = eager_module(path, options.eager.source, options.eager.factory, device)
        return module_backend(module, device, "eager", options.compile)
    raise ModelConfigError(refusal(model_file))


def _check_options(model_file: ModelFile, options: LoadOptions) -> None:
    """Refuse YAML settings that cannot apply to this kind of file."""
    kind, name = model_file.kind, model_file.path.name
    if options.eager is not None and kind is not ModelKind.STATE_DICT:
        raise ModelConfigError(f"handler.model_factory is set, but model file {name} is a {kind}, not a state_dict: "
                               "drop handler.model_factory and archive.model_source (the file is served as it is)")
    compiling = options.compile is not None and options.compile.enable
    if compiling and kind not in (ModelKind.EXPORTED, ModelKind.STATE_DICT):
        raise ModelConfigError(f"pt2.compile applies to eager models and ExportedPrograms; model file {name} is a "
                               f"{kind}: set pt2.compile.enable: false")


def refusal(model_file: ModelFile) -> str:
    """What a file no backend serves is, and what to do, in one line."""
    name, detail = model_file.path.name, f" ({model_file.detail})" if model_file.detail else ""
    if not model_file.path.is_file():
        return f"model file {name} does not exist"
    if model_file.kind is ModelKind.STATE_DICT:
        return (f"model file {name} is a state_dict (weights without the model's code), not a model: export it "
                f"with `python -m toolkit.export --model your_model.py:FACTORY --checkpoint {name} --format aoti` "
                "(docs/export.md), or serve it eagerly with archive.model_source and handler.model_factory")
    if model_file.kind is ModelKind.EAGER_PICKLE:
        return (f"model file {name} is an eager pickle of a whole module{detail} (torch.save(model)), which cannot "
                "be loaded without running its code: save model.state_dict() instead and " + EXPORT_HINT)
    return (f"model file {name} is not a model file this toolkit serves{detail}: it serves AOTInductor and "
            f"ExportedProgram .pt2, TorchScript, ONNX, and state_dicts with their source; {EXPORT_HINT}")


def load_archive_model(model_dir: Path, manifest: dict, config: ModelYaml, device: torch.device,
                       threads: int) -> Backend:
    """The backend of an archive's model, as a worker loads it: the manifest's `serializedFile`, its `modelFile`
    (eager source) with `handler.model_factory`, and the YAML's `pt2.compile`."""
    model = manifest["model"]
    factory, source = config.handler.model_factory, model.get("modelFile")
    if factory is not None and not source:
        raise ModelConfigError("handler.model_factory is set but the archive has no model source: set "
                               "archive.model_source to the .py file that defines it")
    eager = EagerSource(model_dir / source, factory) if factory is not None else None
    compile_settings = config.pt2.compile if config.pt2 is not None else None
    return load_backend(model_dir / model["serializedFile"], device, threads, LoadOptions(eager, compile_settings))
