"""`python -m toolkit.export --model ...`: any nn.Module, from a file or a package, exported and checked against eager
through the backend that serves it; every failure one line naming the cause and the fix. (AOTInductor compiles
are covered by the integration tier, cached: tests/own_exports.py.)"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from handlers.backends import ModelKind, identify, load_backend
from tests.own_models import TwoHeads
from tests.paths import ROOT
from toolkit.export.__main__ import main
from toolkit.export.errors import ExportUsageError
from toolkit.export.inputs import InputSpec

MODELS = '''
import torch
from torch import nn


class Branchy(nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x * 2
        return x


class FixedBatch(nn.Module):
    def forward(self, x):
        return x.reshape(2, -1)


class Noisy(nn.Module):
    def forward(self, x):
        return x + torch.rand_like(x)


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(10, 4)

    def forward(self, ids, mask):
        return {"pooled": (self.embedding(ids) * mask.unsqueeze(-1)).sum(1)}


def two_inputs():
    return TwoInputs()


def not_a_module():
    return 42


def broken():
    raise ValueError("needs a config file")


VALUE = 3
'''


@pytest.fixture
def models_file(tmp_path: Path) -> Path:
    path = tmp_path / "user_models.py"
    path.write_text(textwrap.dedent(MODELS))
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(("text", "dtype", "shape"), [("1,28,28", torch.float32, (1, 28, 28)),
                                                      ("int64:128", torch.int64, (128,)),
                                                      ("bool:4,4", torch.bool, (4, 4))])
def test_example_inputs_parse(text, dtype, shape):
    spec = InputSpec.parse(text)
    assert (spec.dtype, spec.shape) == (dtype, shape)
    batch = spec.random(8, torch.Generator().manual_seed(0))
    assert batch.shape == (8, *shape) and batch.dtype == dtype


@pytest.mark.parametrize(("text", "message"), [("int65:3", "unknown dtype 'int65'"), ("3,x", "expected [DTYPE:]D1"),
                                               ("0,3", "expected [DTYPE:]D1"), ("", "expected [DTYPE:]D1")])
def test_bad_example_inputs_are_refused(text, message):
    with pytest.raises(ExportUsageError, match=re.escape(f"--example-input '{text}': {message}")):
        InputSpec.parse(text)


def test_a_dict_output_model_from_a_package_is_exported_and_served_with_its_outputs(tmp_path, capsys):
    torch.manual_seed(0)
    model = TwoHeads().eval()
    torch.save({"model": model.state_dict()}, tmp_path / "ckpt.pth")
    out = tmp_path / "two_heads.pt2"
    code, stdout, _ = run(capsys, "--model", "tests.own_models:build_two_heads", "--checkpoint",
                          str(tmp_path / "ckpt.pth"), "--example-input", "30", "--format", "exported",
                          "--out", str(out))
    assert code == 0
    assert stdout.startswith(f"wrote {out} (ExportedProgram, ")
    assert "served by exported, max abs diff from eager batch 1: 0.00e+00, batch 8: 0.00e+00 (atol 0.0001)" in stdout
    served = load_backend(out, torch.device("cpu"), 1)(torch.ones(3, 30))
    expected = model(torch.ones(3, 30))
    assert set(served) == {"logits", "embedding"}
    assert all(torch.allclose(served[k], expected[k], atol=1e-6) for k in expected)


def test_onnx_export_writes_its_external_data_and_names_outputs_as_the_handlers_do(models_file, tmp_path, capsys):
    out = tmp_path / "two.onnx"
    code, stdout, _ = run(capsys, "--model", f"{models_file}:two_inputs", "--example-input", "int64:6",
                          "--example-input", "float32:6", "--format", "onnx", "--out", str(out))
    assert code == 0, stdout
    assert identify(out).kind is ModelKind.ONNX and "served by onnxruntime" in stdout
    backend = load_backend(out, torch.device("cpu"), 1)
    assert backend.input_names == ["input_0", "input_1"] and backend.output_names == ["pooled"]


def test_a_model_torchscript_cannot_compile_is_refused_with_the_formats_that_work(tmp_path):
    """In a fresh interpreter, as a user runs it: torch.jit keeps a failed compile of a class for the rest of the
    process, and this session's other tests compile the same class."""
    done = subprocess.run([sys.executable, "-m", "toolkit.export", "--model", "tests.own_models:build_two_heads",
                           "--example-input", "30", "--format", "torchscript", "--out", str(tmp_path / "m.pt")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    code, err = done.returncode, done.stderr.splitlines()[-1] + "\n" if done.stderr else ""
    assert code == 1
    assert err.startswith("error: torch.jit.script cannot compile the model (")
    assert "own_models.py:" in err and err.rstrip().endswith(
        "TorchScript is deprecated: use --format aoti or --format exported")
    assert not (tmp_path / "m.pt").exists()


def test_data_dependent_control_flow_names_the_line_and_the_fix(models_file, tmp_path, capsys):
    code, _, err = run(capsys, "--model", f"{models_file}:Branchy", "--example-input", "5", "--format", "exported",
                       "--out", str(tmp_path / "m.pt2"))
    assert code == 1  # torch logs the traced graph first; the last line is ours
    assert err.splitlines()[-1] == ("error: the forward branches on tensor values (data-dependent control flow at "
                                    "user_models.py:8 (`if x.sum() > 0:`)), which torch.export cannot trace: "
                                    "rewrite the branch with torch.cond, or use "
                                    "--format torchscript")


def test_a_fixed_batch_size_is_named(models_file, tmp_path, capsys):
    code, _, err = run(capsys, "--model", f"{models_file}:FixedBatch", "--example-input", "5", "--format", "exported",
                       "--out", str(tmp_path / "m.pt2"))
    assert code == 1
    assert err.splitlines()[-1].startswith("error: the forward fixes the batch size to 2")
    assert err.rstrip().endswith("use x.shape[0], x.flatten(1) or reshape(x.shape[0], -1) instead of a literal "
                                 "batch size")


def test_an_export_that_differs_from_eager_is_refused_and_deleted(models_file, tmp_path, capsys):
    out = tmp_path / "m.pt2"
    code, _, err = run(capsys, "--model", f"{models_file}:Noisy", "--example-input", "5", "--format", "exported",
                       "--out", str(out))
    assert code == 1
    assert err.startswith("error: output 'output' at batch 1 differs from eager by ")
    assert "> atol 0.0001: the export does not compute what the model does" in err
    assert not out.exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "{file}:nope"], "error: --model '{file}:nope': {file} defines no 'nope'"),
    (["--model", "{file}:VALUE"], "error: {file}:VALUE is a int, not a callable returning the nn.Module"),
    (["--model", "{file}:not_a_module"], "error: {file}:not_a_module() returned a int, not a torch.nn.Module"),
    (["--model", "{file}:broken"], "error: --model {file}:broken: the factory raised ValueError: needs a config file"),
    (["--model", "missing.py:build"], "error: --model 'missing.py:build': missing.py does not exist"),
    (["--model", "no_such_package.models:build"], "error: --model 'no_such_package.models:build': cannot import "
                                                  "no_such_package.models"),
    (["--model", "{file}"], "error: --model '{file}': expected FILE.py:FACTORY or package.module:FACTORY"),
])
def test_a_model_that_cannot_be_built_is_named(models_file, tmp_path, capsys, args, message):
    args = [arg.format(file=models_file) for arg in args]
    code, _, err = run(capsys, *args, "--example-input", "5", "--format", "exported", "--out", str(tmp_path / "m.pt2"))
    assert code == 2
    assert err.startswith(message.format(file=models_file))


def test_checkpoints_that_are_no_state_dict_are_refused(tmp_path, capsys):
    torch.save(TwoHeads(), tmp_path / "whole.pt")
    torch.save({"linear.weight": torch.ones(1)}, tmp_path / "other.pt")
    common = ["--model", "tests.own_models:build_two_heads", "--example-input", "30", "--format", "exported",
              "--out", str(tmp_path / "m.pt2"), "--checkpoint"]
    code, _, err = run(capsys, *common, str(tmp_path / "whole.pt"))
    assert code == 2 and err.startswith("error: --checkpoint whole.pt: not a weights-only state_dict (")
    assert err.rstrip().endswith("save one with torch.save(model.state_dict(), path)")
    code, _, err = run(capsys, *common, str(tmp_path / "other.pt"))
    assert code == 2 and err.startswith("error: --checkpoint other.pt does not fit the model: missing keys "
                                        "['classifier.bias', 'classifier.weight', ")


def test_example_inputs_the_model_refuses_are_named(tmp_path, capsys):
    code, _, err = run(capsys, "--model", "tests.own_models:build_two_heads", "--example-input", "31", "--format",
                       "exported", "--out", str(tmp_path / "m.pt2"))
    assert code == 2
    assert err.startswith("error: the model refuses the example inputs (float32[2, 31], batch first): ")
    assert "give one --example-input per positional input, its shape per item without the batch dimension" in err


@pytest.mark.parametrize(("args", "message"), [
    (["--format", "aoti", "--out", "m.so"], "error: --out m.so: an AOTInductor package must end in .pt2"),
    (["--format", "aoti", "--out", "m.pt2", "--device", "cuda"], "error: --device cuda: this torch"),
])
def test_bad_outputs_and_devices_are_refused(capsys, args, message):
    if message.startswith("error: --device") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA: --device cuda is valid here")
    code, _, err = run(capsys, "--model", "tests.own_models:build_two_heads", "--example-input", "30", *args)
    assert code == 2 and err.startswith(message)


def test_model_needs_format_and_example_inputs(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--model", "tests.own_models:build_two_heads", "--format", "exported", "--out", "m.pt2"])
    assert info.value.code == 2
    assert "--model needs --example-input" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--model", "tests.own_models:build_two_heads", "--example-input", "30", "--out", "m.pt2"])
    assert "--model needs --format" in capsys.readouterr().err


def test_a_demo_architecture_exports_in_the_new_formats_with_its_known_input(tmp_path, capsys):
    from toolkit.export.architectures import TabularMLP

    torch.save(TabularMLP(mean=torch.randn(30), std=torch.rand(30) + 0.5).state_dict(), tmp_path / "ckpt.pth")
    code, stdout, _ = run(capsys, "--arch", "tabular_mlp", "--checkpoint", str(tmp_path / "ckpt.pth"), "--format",
                          "exported", "--out", str(tmp_path / "tabular.pt2"))
    assert code == 0 and "served by exported" in stdout
