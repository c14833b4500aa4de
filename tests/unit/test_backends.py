"""Backends picked from the model file: TorchScript and ONNX Runtime give the same answers."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from handlers.backends import OnnxBackend, TorchScriptBackend, load_backend
from handlers.errors import ModelConfigError


def linear_log_softmax_onnx(path, weight: np.ndarray, bias: np.ndarray) -> None:
    """A (batch, 30) -> (batch, 2) ONNX graph: log_softmax(x @ W + b), dynamic batch axis."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["logits"]),
         helper.make_node("LogSoftmax", ["logits"], ["output"], axis=1)],
        "linear",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 30])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor("W", TensorProto.FLOAT, weight.shape, weight.ravel()),
         helper.make_tensor("b", TensorProto.FLOAT, bias.shape, bias)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def test_onnx_and_torchscript_backends_agree(tmp_path):
    rng = np.random.default_rng(0)
    weight, bias = rng.normal(size=(30, 2)).astype(np.float32), rng.normal(size=2).astype(np.float32)
    linear_log_softmax_onnx(tmp_path / "m.onnx", weight, bias)
    module = torch.nn.Sequential(torch.nn.Linear(30, 2), torch.nn.LogSoftmax(dim=1))
    with torch.no_grad():
        module[0].weight.copy_(torch.from_numpy(weight.T))
        module[0].bias.copy_(torch.from_numpy(bias))
    torch.jit.script(module).save(str(tmp_path / "m.pt"))

    onnx_backend = load_backend(tmp_path / "m.onnx", torch.device("cpu"), threads=1)
    script_backend = load_backend(tmp_path / "m.pt", torch.device("cpu"), threads=1)
    assert isinstance(onnx_backend, OnnxBackend) and isinstance(script_backend, TorchScriptBackend)
    batch = torch.from_numpy(rng.normal(size=(7, 30)).astype(np.float32))
    onnx_out, script_out = onnx_backend(batch), script_backend(batch)
    assert onnx_out.shape == script_out.shape == (7, 2) and onnx_out.dtype == torch.float32
    assert torch.allclose(onnx_out, script_out, atol=1e-5)


def test_onnx_backend_uses_the_cpu_provider_with_the_thread_setting(tmp_path):
    linear_log_softmax_onnx(tmp_path / "m.onnx", np.ones((30, 2), np.float32), np.zeros(2, np.float32))
    backend = OnnxBackend(tmp_path / "m.onnx", torch.device("cpu"), threads=1)
    assert backend.session.get_providers() == ["CPUExecutionProvider"]
    assert backend.session.get_session_options().intra_op_num_threads == 1


def test_unknown_model_file_suffix_is_refused(tmp_path):
    with pytest.raises(ModelConfigError, match=r"model file m.bin: unknown suffix '.bin'; allowed: .pt, .pth"):
        load_backend(tmp_path / "m.bin", torch.device("cpu"), threads=1)
