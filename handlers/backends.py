"""Inference backends, picked from the model file: TorchScript (`.pt`) or ONNX Runtime (`.onnx`).

A backend is called with the model's positional inputs, each a batch tensor (N, ...), and returns what the
model returns (a tensor, a dict, or a tuple of tensors with N rows; `handlers.outputs` names them), without
autograd. The inputs may arrive on any device; the backend moves them to its own.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Protocol

import torch

from handlers.errors import ModelConfigError

TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".torchscript")
ONNX_SUFFIXES = (".onnx",)


class Backend(Protocol):
    """Callable model: positional inputs (N, ...) -> the model's outputs (N rows each)."""

    name: str

    def __call__(self, *inputs: torch.Tensor) -> object: ...


def optimize_torchscript(module: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    """`module` frozen (weights inlined as constants) and passed through `torch.jit.optimize_for_inference`
    (conv/bn folding, MKL-DNN layouts on CPU). Done at load time, in the worker: the optimised graph cannot be
    saved and loaded again (torch 2.13: "required keyword attribute 'value' is undefined"). Outputs are equal
    to eager within the ONNX tolerance, checked on the held-out set by toolkit.export.torchscript.check_optimized
    (build_models: `optimized_vs_eager_max_abs_diff` in metrics.json)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=DeprecationWarning)
        return torch.jit.optimize_for_inference(torch.jit.freeze(module.eval()))


class TorchScriptBackend:
    """A TorchScript module on `device`, run under `torch.inference_mode()`. On the CPU it serves the module
    frozen + `optimize_for_inference` (`optimize_torchscript`): 1.4-1.6x the images/s of the plain scripted
    module at batch 8-32 (`make bench`, raw phase); `optimized` says which one runs."""

    name = "torchscript"

    def __init__(self, path: Path, device: torch.device, optimize: bool = True) -> None:
        self.device = device
        self.module = torch.jit.load(str(path), map_location=device).eval()
        self.optimized = False
        if optimize and device.type == "cpu":
            try:
                self.module = optimize_torchscript(self.module)
                self.optimized = True
            except RuntimeError:  # a module freezing cannot handle: serve it as scripted
                pass

    def __call__(self, *inputs: torch.Tensor) -> object:
        with torch.inference_mode():
            return self.module(*(tensor.to(self.device, non_blocking=True) for tensor in inputs))


class OnnxBackend:
    """An ONNX Runtime session: CUDA provider on the worker's GPU when available, else CPU."""

    name = "onnxruntime"

    def __init__(self, path: Path, device: torch.device, threads: int) -> None:
        import onnxruntime as ort  # imported only by workers that serve ONNX models

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        providers: list = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.input_names = [node.name for node in self.session.get_inputs()]
        self.output_names = [node.name for node in self.session.get_outputs()]

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        """The model's outputs: one tensor for a one-output graph, else a dict by the graph's output names."""
        feed = {name: tensor.detach().cpu().numpy() for name, tensor in zip(self.input_names, inputs, strict=True)}
        outputs = [torch.from_numpy(array) for array in self.session.run(None, feed)]
        return outputs[0] if len(outputs) == 1 else dict(zip(self.output_names, outputs, strict=True))


def load_backend(path: Path, device: torch.device, threads: int) -> Backend:
    """The backend for a model file, chosen by its suffix. Raises ModelConfigError for any other file."""
    suffix = path.suffix.lower()
    if suffix in TORCHSCRIPT_SUFFIXES:
        return TorchScriptBackend(path, device)
    if suffix in ONNX_SUFFIXES:
        return OnnxBackend(path, device, threads)
    allowed = ", ".join(TORCHSCRIPT_SUFFIXES + ONNX_SUFFIXES)
    raise ModelConfigError(f"model file {path.name}: unknown suffix {suffix!r}; allowed: {allowed}")
