"""The demo models on the new path: `make models` also writes each as an ExportedProgram and an AOTInductor
package, and both answer the held-out set as the TorchScript module does, through the backend a worker serves
them with."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from examples.demo_models.digits import normalize
from handlers.backends import ModelKind, identify, load_backend
from tests.paths import BUILD, require_built
from toolkit.export.torchscript import load_torchscript, predict

KINDS = {"exported": ModelKind.EXPORTED, "aoti": ModelKind.AOTI}


@pytest.mark.parametrize("fmt", sorted(KINDS))
@pytest.mark.parametrize("name", ["mnist", "tabular"])
def test_demo_pt2_exports_answer_the_heldout_set_as_torchscript(name, fmt):
    folder = require_built(BUILD / name / f"{name}_{fmt}.pt2", "make models").parent
    path = folder / f"{name}_{fmt}.pt2"
    assert identify(path).kind is KINDS[fmt]
    x = np.load(folder / "heldout.npz")["x"]
    inputs = torch.from_numpy(normalize(x) if name == "mnist" else x.astype(np.float32))
    served = predict(load_backend(path, torch.device("cpu"), threads=1), inputs)
    reference = predict(load_torchscript(folder / f"{name}.pt"), inputs)
    assert float((served - reference).abs().max()) <= 1e-4
    checks = json.loads((folder / "metrics.json").read_text())["checks"]
    assert checks[f"{fmt}_vs_eager_max_abs_diff"] <= 1e-4 and checks[f"{fmt}_bytes"] == path.stat().st_size


def test_bench_compare_serves_each_backend_of_mnist_from_its_own_archive(tmp_path):
    """`make bench`'s backend comparison archives mnist.yaml again with each export, and names each archive's
    backend by its model file (not by its name)."""
    from toolkit.bench.compare import model_store

    for fmt in KINDS:
        require_built(BUILD / "mnist" / f"mnist_{fmt}.pt2", "make models")
    backends = model_store(tmp_path)
    assert backends == {"mnist": "onnxruntime", "mnist_torchscript": "torchscript", "tabular": "torchscript",
                        "tabular_onnx": "onnxruntime", "mnist_aoti": "aotinductor", "mnist_exported": "exported"}
    assert sorted(p.name for p in tmp_path.glob("*.mar")) == sorted(f"{name}.mar" for name in backends)
