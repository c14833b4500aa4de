"""TorchScript, the legacy format (deprecated by PyTorch since 2.9; `torch.export` is its successor). Served frozen
+ `torch.jit.optimize_for_inference` on the CPU. This module is the one shipped path that calls `torch.jit`, each
call with its DeprecationWarning silenced."""

from __future__ import annotations

from pathlib import Path

import torch

from handlers.backends.quiet import JIT_DEPRECATED, jit_deprecation_ignored

__all__ = ["JIT_DEPRECATED", "TorchScriptBackend", "jit_deprecation_ignored", "optimize_torchscript"]


def optimize_torchscript(module: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    """`module` frozen (weights inlined as constants) and passed through `torch.jit.optimize_for_inference`
    (conv/bn folding, MKL-DNN layouts on CPU). Done at load time, in the worker: the optimised graph cannot be
    saved and loaded again (torch 2.13: "required keyword attribute 'value' is undefined"). Outputs are equal
    to eager within the ONNX tolerance, checked on the held-out set by toolkit.export.torchscript.check_optimized
    (build_models: `optimized_vs_eager_max_abs_diff` in metrics.json)."""
    with jit_deprecation_ignored():
        return torch.jit.optimize_for_inference(torch.jit.freeze(module.eval()))


class TorchScriptBackend:
    """A TorchScript module on `device`, run under `torch.inference_mode()`. On the CPU it serves the module
    frozen + `optimize_for_inference` (`optimize_torchscript`): 1.4-1.6x the images/s of the plain scripted
    module at batch 8-32 (`make bench`, raw phase); `optimized` says which one runs."""

    name = "torchscript"

    def __init__(self, path: Path, device: torch.device, optimize: bool = True) -> None:
        self.device = device
        with jit_deprecation_ignored():
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
