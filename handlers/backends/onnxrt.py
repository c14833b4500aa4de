"""ONNX models (and the ONNX Runtime format) on ONNX Runtime; weights kept in external data files
(`torch.onnx.export` writes `<name>.onnx.data` by default) are read from beside the model file."""

from __future__ import annotations

from pathlib import Path

import torch

from handlers.errors import ModelConfigError


class OnnxBackend:
    """An ONNX Runtime session: CUDA provider on the worker's GPU when available, else CPU. Inputs are fed in the
    graph's input order; the outputs come back as one tensor for a graph whose only output is `output`, else as
    a dict by the graph's output names."""

    name = "onnxruntime"

    def __init__(self, path: Path, device: torch.device, threads: int) -> None:
        import onnxruntime as ort  # imported only by workers that serve ONNX models

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        providers: list = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime's own exception classes are not importable by name
            raise ModelConfigError(describe_session_error(path, exc)) from None
        self.input_names = [node.name for node in self.session.get_inputs()]
        self.output_names = [node.name for node in self.session.get_outputs()]

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        """The model's outputs: one tensor for a graph whose one output is named `output` (a tensor-returning
        module's, as `toolkit.export` names it), else a dict by the graph's output names."""
        feed = {name: tensor.detach().cpu().numpy() for name, tensor in zip(self.input_names, inputs, strict=True)}
        outputs = [torch.from_numpy(array) for array in self.session.run(None, feed)]
        if self.output_names == ["output"]:
            return outputs[0]
        return dict(zip(self.output_names, outputs, strict=True))


def describe_session_error(path: Path, exc: Exception) -> str:
    """One line for an ONNX file that ONNX Runtime cannot open; a missing external-data file named with its fix."""
    text = str(exc).replace("\n", " ")
    if "xternal data" in text or "external_data" in text:
        return (f"model file {path.name}: its weights are in an external data file that is not beside it "
                f"({text[:300]}); keep {path.name}.data next to {path.name} (the archive tool packs the files the "
                "model names)")
    return f"model file {path.name}: ONNX Runtime cannot load it ({text[:300]})"
