"""AOTInductor packages (`torch._inductor.aoti_compile_and_package` -> `.pt2`): the model compiled ahead of time
to native code for one device kind, loaded with `torch._inductor.aoti_load_package`. The package records what it
was compiled for (`AOTI_DEVICE_KEY`, `AOTI_CPU_ISA`); one compiled for another device than the worker's is
refused at start with that reason."""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch

from handlers.backends.sniff import aoti_metadata
from handlers.errors import ModelConfigError

# ATen's CPU capability (torch.backends.cpu.get_cpu_capability()) -> the vector ISAs a CPU with it runs.
_ISA_RANK = {"DEFAULT": 0, "AVX2": 1, "AVX512": 2}


def check_aoti_device(metadata: dict[str, str], device: torch.device, file_name: str,
                      cpu_capability: str | None = None) -> None:
    """Refuse (ModelConfigError, one line with the fix) a package compiled for another device kind than
    `device`, or for a wider CPU vector ISA than this CPU has (`cpu_capability`: ATen's, read when None)."""
    compiled_for = metadata.get("AOTI_DEVICE_KEY", "")
    if compiled_for and compiled_for != device.type:
        fix = (f"export it again with `python -m toolkit.export ... --format aoti --device {device.type}`"
               if device.type == "cuda" else "export it with --device cpu, or set deviceType: gpu")
        raise ModelConfigError(f"model file {file_name} is an AOTInductor package compiled for {compiled_for}, but "
                               f"this worker runs on {device}: {fix}")
    if device.type == "cpu":
        _check_isa(metadata.get("AOTI_CPU_ISA", ""), cpu_capability or torch.backends.cpu.get_cpu_capability(),
                   file_name)


def _check_isa(package_isa: str, capability: str, file_name: str) -> None:
    needed = 2 if "AVX512" in package_isa else 1 if "AVX2" in package_isa else 0
    if capability in _ISA_RANK and needed > _ISA_RANK[capability]:
        raise ModelConfigError(f"model file {file_name} is an AOTInductor package compiled for {package_isa}, which "
                               f"this CPU lacks ({capability}): export it again on a CPU like this one")


class AotiBackend:
    """An AOTInductor package on the worker's device (checked against the package's metadata first)."""

    name = "aotinductor"

    def __init__(self, path: Path, device: torch.device) -> None:
        with zipfile.ZipFile(path) as archive:
            check_aoti_device(aoti_metadata(archive), device, path.name)
        self.device = device
        index = device.index if device.type == "cuda" and device.index is not None else -1
        self.runner = torch._inductor.aoti_load_package(str(path), device_index=index)

    def __call__(self, *inputs: torch.Tensor) -> object:
        """The model's outputs, in the structure the exported module returned (tensor, dict, tuple)."""
        with torch.inference_mode():
            return self.runner(*(tensor.to(self.device, non_blocking=True).contiguous() for tensor in inputs))
