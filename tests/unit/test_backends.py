"""Backends chosen by what the model file is, not its suffix: each format detected from its contents and served
with the same answers; files no backend serves refused with what they are and what to do."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from handlers.backends import (
    AotiBackend,
    EagerSource,
    LoadOptions,
    ModelKind,
    ModuleBackend,
    OnnxBackend,
    TorchScriptBackend,
    check_aoti_device,
    identify,
    load_backend,
)
from handlers.config import CompileSettings
from handlers.errors import ModelConfigError
from tests.paths import ROOT
from tests.served import save_scripted
from toolkit.export.formats import write_onnx

CPU = torch.device("cpu")
CUDA = torch.device("cuda", 0)
EAGER_SOURCE = '''
import torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(30, 2)

    def forward(self, x):
        return {"scores": self.linear(x), "double": 2 * x}


def build():
    return Net()
'''


class Pickled(torch.nn.Module):
    """A module saved whole with torch.save (an eager pickle)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(30, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


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


def exported_program(path, module: torch.nn.Module) -> None:
    batch = torch.export.Dim("batch", min=1)
    torch.export.save(torch.export.export(module.eval(), (torch.randn(2, 30),), dynamic_shapes=({0: batch},)),
                      str(path))


def fake_aoti_package(path, device: str, isa: str = "AVX2") -> None:
    """A zip laid out as an AOTInductor package (its metadata only: the device check runs before any loading)."""
    metadata = {"AOTI_DEVICE_KEY": device, "AOTI_PLATFORM": "linux", "AOTI_CPU_ISA": isa}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model/archive_format", "pt2")
        archive.writestr("model/data/aotinductor/model/abc.wrapper_metadata.json", json.dumps(metadata))
        archive.writestr("model/data/aotinductor/model/abc.wrapper.so", b"\x7fELF")


def test_onnx_and_torchscript_backends_agree_whatever_the_suffix(tmp_path):
    rng = np.random.default_rng(0)
    weight, bias = rng.normal(size=(30, 2)).astype(np.float32), rng.normal(size=2).astype(np.float32)
    linear_log_softmax_onnx(tmp_path / "m.bin", weight, bias)
    module = torch.nn.Sequential(torch.nn.Linear(30, 2), torch.nn.LogSoftmax(dim=1))
    save_scripted(module, tmp_path / "m.onnx")  # a TorchScript file with the wrong suffix
    with torch.no_grad():
        module[0].weight.copy_(torch.from_numpy(weight.T))
        module[0].bias.copy_(torch.from_numpy(bias))
    onnx_backend = load_backend(tmp_path / "m.bin", CPU, threads=1)
    assert isinstance(onnx_backend, OnnxBackend) and identify(tmp_path / "m.bin").kind is ModelKind.ONNX
    assert identify(tmp_path / "m.onnx").kind is ModelKind.TORCHSCRIPT
    batch = torch.from_numpy(rng.normal(size=(7, 30)).astype(np.float32))
    assert torch.allclose(onnx_backend(batch), module(batch).detach(), atol=1e-5)


def test_onnx_backend_uses_the_cpu_provider_with_the_thread_setting(tmp_path):
    linear_log_softmax_onnx(tmp_path / "m.onnx", np.ones((30, 2), np.float32), np.zeros(2, np.float32))
    backend = OnnxBackend(tmp_path / "m.onnx", CPU, threads=1)
    assert backend.session.get_providers() == ["CPUExecutionProvider"]
    assert backend.session.get_session_options().intra_op_num_threads == 1


def test_an_exported_program_is_served_as_its_module_with_its_dict_output(tmp_path):
    module = Pickled().eval()
    exported_program(tmp_path / "model.pt", module)  # a .pt2 by content, whatever its name
    backend = load_backend(tmp_path / "model.pt", CPU, threads=1)
    assert identify(tmp_path / "model.pt").kind is ModelKind.EXPORTED
    assert isinstance(backend, ModuleBackend) and backend.name == "exported"
    x = torch.randn(5, 30)
    assert torch.allclose(backend(x), module(x).detach(), atol=1e-6)


def test_an_eager_model_is_built_from_its_source_factory_and_a_checkpoint_dict(tmp_path):
    (tmp_path / "net_source.py").write_text(EAGER_SOURCE)
    torch.manual_seed(0)
    weights = {"linear.weight": torch.randn(2, 30), "linear.bias": torch.randn(2)}
    torch.save({"model": {f"module.{k}": v for k, v in weights.items()}, "epoch": 1}, tmp_path / "weights.bin")
    assert identify(tmp_path / "weights.bin").kind is ModelKind.STATE_DICT
    backend = load_backend(tmp_path / "weights.bin", CPU, 1,
                           LoadOptions(EagerSource(tmp_path / "net_source.py", "build")))
    x = torch.randn(4, 30)
    out = backend(x)
    assert backend.name == "eager" and set(out) == {"scores", "double"}
    assert torch.allclose(out["scores"], x @ weights["linear.weight"].T + weights["linear.bias"], atol=1e-6)


def test_an_eager_model_with_torch_compile_warms_up_for_a_dynamic_batch(tmp_path):
    (tmp_path / "net_source2.py").write_text(EAGER_SOURCE)
    torch.save({"linear.weight": torch.ones(2, 30), "linear.bias": torch.zeros(2)}, tmp_path / "sd.pt")
    settings = CompileSettings(enable=True, backend="aot_eager")
    backend = load_backend(tmp_path / "sd.pt", CPU, 1, LoadOptions(EagerSource(tmp_path / "net_source2.py", "build"),
                                                                   settings))
    assert backend.name == "eager + torch.compile(aot_eager)"
    assert backend(torch.ones(1, 30))["scores"].tolist() == [[30.0, 30.0]]
    assert backend(torch.ones(5, 30))["scores"].shape == (5, 2)


def test_a_state_dict_without_its_source_is_refused_with_what_it_is_and_what_to_do(tmp_path):
    torch.save(Pickled().state_dict(), tmp_path / "model.pt")
    with pytest.raises(ModelConfigError) as info:
        load_backend(tmp_path / "model.pt", CPU, 1)
    assert str(info.value) == ("model file model.pt is a state_dict (weights without the model's code), not a "
                               "model: export it with `python -m toolkit.export --model your_model.py:FACTORY "
                               "--checkpoint model.pt --format aoti` (docs/export.md), or serve it eagerly with "
                               "archive.model_source and handler.model_factory")


def test_a_state_dict_in_torch_save_legacy_format_is_recognised(tmp_path):
    torch.save(Pickled().state_dict(), tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    assert identify(tmp_path / "old.pth").kind is ModelKind.STATE_DICT


def test_an_eager_pickle_is_refused_naming_its_class_without_running_it(tmp_path):
    torch.save(Pickled(), tmp_path / "model.pt")
    found = identify(tmp_path / "model.pt")
    assert found.kind is ModelKind.EAGER_PICKLE and found.detail == f"class {__name__}.Pickled"
    with pytest.raises(ModelConfigError, match=r"model file model.pt is an eager pickle of a whole module \(class "
                                               r"tests.unit.test_backends.Pickled\) \(torch.save\(model\)\)"):
        load_backend(tmp_path / "model.pt", CPU, 1)


@pytest.mark.parametrize(("content", "detail"), [(b"GIF89a not a model", "first bytes b'GIF89a n'"),
                                                 (b"", "first bytes b''")])
def test_a_file_that_is_no_model_is_refused(tmp_path, content, detail):
    (tmp_path / "model.pt2").write_bytes(content)
    with pytest.raises(ModelConfigError, match=rf"model file model.pt2 is not a model file this toolkit serves "
                                               rf"\({detail}\): it serves AOTInductor and ExportedProgram .pt2"):
        load_backend(tmp_path / "model.pt2", CPU, 1)


def test_a_zip_that_torch_did_not_write_is_not_a_model(tmp_path):
    with zipfile.ZipFile(tmp_path / "model.pt2", "w") as archive:
        archive.writestr("readme.txt", "hello")
    assert identify(tmp_path / "model.pt2").detail == "a zip file that torch did not write"


def test_an_aoti_package_is_recognised_with_its_device(tmp_path):
    fake_aoti_package(tmp_path / "m.pt2", "cpu")
    found = identify(tmp_path / "m.pt2")
    assert (found.kind, found.detail) == (ModelKind.AOTI, "cpu")


def test_a_cpu_aoti_package_on_a_gpu_worker_is_refused_before_loading(tmp_path):
    fake_aoti_package(tmp_path / "m.pt2", "cpu")
    with pytest.raises(ModelConfigError) as info:
        AotiBackend(tmp_path / "m.pt2", CUDA)
    assert str(info.value) == ("model file m.pt2 is an AOTInductor package compiled for cpu, but this worker runs "
                               "on cuda:0: export it again with `python -m toolkit.export ... --format aoti "
                               "--device cuda`")


def test_a_cuda_aoti_package_on_a_cpu_worker_is_refused():
    with pytest.raises(ModelConfigError, match="compiled for cuda, but this worker runs on cpu: export it with "
                                               "--device cpu, or set deviceType: gpu"):
        check_aoti_device({"AOTI_DEVICE_KEY": "cuda"}, CPU, "m.pt2")


@pytest.mark.parametrize(("isa", "capability", "refused"), [("AVX512 AVX512_VNNI", "AVX2", True),
                                                            ("AVX512 AVX512_VNNI", "AVX512", False),
                                                            ("AVX2", "DEFAULT", True), ("AVX2", "AVX512", False),
                                                            ("", "DEFAULT", False)])
def test_an_aoti_package_needs_the_cpu_vector_isa_it_was_compiled_for(isa, capability, refused):
    metadata = {"AOTI_DEVICE_KEY": "cpu", "AOTI_CPU_ISA": isa}
    if refused:
        with pytest.raises(ModelConfigError, match=f"compiled for {isa}, which this CPU lacks"):
            check_aoti_device(metadata, CPU, "m.pt2", cpu_capability=capability)
    else:
        check_aoti_device(metadata, CPU, "m.pt2", cpu_capability=capability)


def test_yaml_settings_that_do_not_apply_to_the_file_are_refused(tmp_path):
    save_scripted(Pickled(), tmp_path / "m.pt")
    with pytest.raises(ModelConfigError, match="handler.model_factory is set, but model file m.pt is a TorchScript "
                                               "module, not a state_dict"):
        load_backend(tmp_path / "m.pt", CPU, 1, LoadOptions(EagerSource(tmp_path / "x.py", "build")))
    with pytest.raises(ModelConfigError, match="pt2.compile applies to eager models and ExportedPrograms; model file "
                                               "m.pt is a TorchScript module: set pt2.compile.enable: false"):
        load_backend(tmp_path / "m.pt", CPU, 1, LoadOptions(compile=CompileSettings(enable=True)))
    assert isinstance(load_backend(tmp_path / "m.pt", CPU, 1, LoadOptions(compile=CompileSettings(enable=False))),
                      TorchScriptBackend)


def test_an_unknown_compile_backend_is_refused_with_the_available_ones(tmp_path):
    exported_program(tmp_path / "m.pt2", Pickled())
    with pytest.raises(ModelConfigError, match=r"pt2.compile.backend = 'nvfuser': not a torch.compile backend of "
                                               r"this torch; available: .*inductor"):
        load_backend(tmp_path / "m.pt2", CPU, 1, LoadOptions(compile=CompileSettings(enable=True, backend="nvfuser")))


def test_an_eager_checkpoint_that_does_not_fit_names_the_keys(tmp_path):
    (tmp_path / "net_source3.py").write_text(EAGER_SOURCE)
    torch.save({"linear.weight": torch.ones(2, 30), "extra": torch.ones(1)}, tmp_path / "sd.pt")
    with pytest.raises(ModelConfigError, match=r"model file sd.pt does not fit the model: missing keys "
                                               r"\['linear.bias'\], unexpected keys \['extra'\]"):
        load_backend(tmp_path / "sd.pt", CPU, 1, LoadOptions(EagerSource(tmp_path / "net_source3.py", "build")))


def test_an_onnx_model_without_its_external_data_names_the_missing_file(tmp_path):
    module = torch.nn.Linear(30, 64).eval()  # weights above torch.onnx's size for keeping them inline
    written = write_onnx(module, (torch.randn(2, 30),), tmp_path / "m.onnx", CPU, ["output"])
    assert written == [tmp_path / "m.onnx", tmp_path / "m.onnx.data"]
    assert (tmp_path / "m.onnx.data").stat().st_size >= 30 * 64 * 4
    assert torch.allclose(load_backend(tmp_path / "m.onnx", CPU, 1)(torch.ones(3, 30)), module(torch.ones(3, 30)),
                          atol=1e-5)
    (tmp_path / "m.onnx.data").unlink()
    with pytest.raises(ModelConfigError, match=r"model file m.onnx: its weights are in an external data file that is "
                                               r"not beside it .*; keep m.onnx.data next to m.onnx"):
        load_backend(tmp_path / "m.onnx", CPU, 1)


def test_torch_compile_with_inductor_is_set_up_without_a_torch_jit_warning(tmp_path):
    """In a fresh interpreter (torch imports torch.utils.mkldnn once per process) with every warning an error:
    torch.compile's Inductor set-up imports it, and its torch.jit DeprecationWarning must stay inside torch."""
    exported_program(tmp_path / "m.pt2", Pickled())
    script = (f"import torch, warnings; from pathlib import Path; from handlers.backends import LoadOptions, "
              f"load_backend; from handlers.config import CompileSettings; "
              f"warnings.filterwarnings('ignore', message='unclosed file', category=ResourceWarning); "
              f"backend = load_backend(Path({str(tmp_path / 'm.pt2')!r}), torch.device('cpu'), 1, "
              f"LoadOptions(compile=CompileSettings(enable=True))); print(backend.name)")
    done = subprocess.run([sys.executable, "-W", "error", "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("exported + torch.compile(inductor)")
