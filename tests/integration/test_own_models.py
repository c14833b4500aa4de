"""Models of your own through `toolkit.export` and `toolkit.archive.build` (the tool `make archive` runs): every
format archived, preflighted on its samples, and answering as the eager module does through the in-process
worker; wrong models and missing samples stopped at the preflight. Exports are made once (tests/own_exports.py)."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from handlers.backends.torchscript import jit_deprecation_ignored
from handlers.errors import ModelConfigError
from tests.own_exports import (
    MODELS_FILE,
    client_inputs,
    eager_archive_yaml,
    eager_outputs,
    eager_probabilities,
    exported,
    trained,
    write_yaml,
)
from tests.paths import ROOT
from toolkit.archive import build
from toolkit.archive.mar import Archive
from toolkit.archive.worker import ArchiveWorker, Request
from toolkit.errors import PreflightError

PROBABILITY_ATOL = 1e-4


def served(mar: Path, work: Path, name: str, data: np.ndarray) -> list[dict]:
    """One request per input of `data` (JSON pixels or one row, with probabilities), answered by the archive
    through the in-process worker; the answers' JSON."""
    worker = ArchiveWorker.from_mar(mar, work)
    try:
        if name == "resnet":
            bodies = [{"image": image.tolist()} for image in data]
        else:
            bodies = [{"inputs": [row.tolist()], "return_probabilities": True} for row in data]
        answers = worker.handle([Request(json.dumps(body).encode(), "application/json") for body in bodies])
    finally:
        worker.close()
    assert [a.status for a in answers] == [200] * len(data), [a.body[:200] for a in answers]
    return [a.json() for a in answers]


def probabilities(name: str, answers: list[dict]) -> np.ndarray:
    if name == "resnet":
        return np.array([answer["probabilities"] for answer in answers])
    return np.array([answer["probabilities"][0] for answer in answers])


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["aoti", "exported"])
@pytest.mark.parametrize("name", ["resnet", "two_heads"])
def test_an_export_of_your_own_model_is_archived_preflighted_and_answers_as_eager(tmp_path, capsys, name, fmt):
    model_file = exported(name, fmt)
    mar = build(write_yaml(f"{name}_{fmt}", name, model_file, tmp_path), tmp_path / "store")
    assert f"preflight {name}_{fmt}: 4 samples answered 200 (4 checked" in capsys.readouterr().out
    assert Archive.open(mar).manifest["model"]["serializedFile"] == model_file.name
    data = client_inputs(name, 6, seed=1)
    answers = served(mar, tmp_path / "work", name, data)
    np.testing.assert_allclose(probabilities(name, answers), eager_probabilities(name, data), atol=PROBABILITY_ATOL)
    if name == "two_heads":  # the extra output the YAML asks for, each request its own row
        embedding = np.array([answer["embedding"][0] for answer in answers])
        np.testing.assert_allclose(embedding, eager_outputs(name, data)["embedding"].numpy(), atol=1e-5)


def test_the_dict_output_model_is_one_torchscript_refuses():
    with jit_deprecation_ignored(), pytest.raises(RuntimeError, match="Arguments for call are not valid"):
        torch.jit.script(trained("two_heads"))


@pytest.mark.slow
def test_an_eager_model_is_archived_with_its_source_and_served_as_torchserve_does(tmp_path, capsys):
    mar = build(eager_archive_yaml("resnet_eager", "resnet", tmp_path), tmp_path / "store")
    assert "preflight resnet_eager: 4 samples answered 200 (4 checked" in capsys.readouterr().out
    names = set(zipfile.ZipFile(mar).namelist())
    assert {"own_models.py", "resnet.ckpt"} <= names
    assert Archive.open(mar).manifest["model"]["modelFile"] == "own_models.py"
    data = client_inputs("resnet", 3, seed=2)
    np.testing.assert_allclose(probabilities("resnet", served(mar, tmp_path / "work", "resnet", data)),
                               eager_probabilities("resnet", data), atol=PROBABILITY_ATOL)


@pytest.mark.slow
def test_an_eager_model_compiled_with_the_pt2_key_answers_as_eager(tmp_path, capsys):
    path = eager_archive_yaml("two_heads_compiled", "two_heads", tmp_path)
    path.write_text(path.read_text() + "pt2:\n  compile:\n    enable: true\n    backend: aot_eager\n")
    mar = build(path, tmp_path / "store")
    assert "preflight two_heads_compiled: 4 samples answered 200" in capsys.readouterr().out
    worker = ArchiveWorker.from_mar(mar, tmp_path / "work")
    try:
        assert worker.entry_point.__self__.model.name == "eager + torch.compile(aot_eager)"
    finally:
        worker.close()


@pytest.mark.slow
def test_an_onnx_export_is_archived_with_its_external_data(tmp_path, capsys):
    model_file = exported("resnet", "onnx", ".onnx")
    data_file = model_file.with_name(model_file.name + ".data")
    assert data_file.stat().st_size > 50_000  # the ResNet's weights live there, not in the graph
    mar = build(write_yaml("resnet_onnx", "resnet", model_file, tmp_path), tmp_path / "store")
    assert "preflight resnet_onnx: 4 samples answered 200 (4 checked" in capsys.readouterr().out
    assert data_file.name in zipfile.ZipFile(mar).namelist()
    depfile = mar.with_name("resnet_onnx.mar.d").read_text()  # make rebuilds the archive when the data changes
    assert str(data_file.relative_to(ROOT)) in depfile

    alone = tmp_path / "alone" / model_file.name
    alone.parent.mkdir()
    shutil.copy2(model_file, alone)
    with pytest.raises(ModelConfigError, match=rf"archive.model_file {model_file.name} keeps its weights in "
                                               rf"\['{data_file.name}'\], which are not beside it"):
        build(write_yaml("resnet_alone", "resnet", alone, tmp_path), tmp_path / "store")


@pytest.mark.slow
def test_the_mislabelled_two_output_onnx_model_is_refused_at_preflight(tmp_path):
    """A model whose first output is a one-column head: a classifier reading it would answer class 0 with
    probability 1 for every input. Pointed at it, or left to pick, the preflight refuses the archive."""
    model_file = exported("scored", "onnx", ".onnx")
    with pytest.raises(PreflightError) as info:
        build(write_yaml("scored_first", "scored", model_file, tmp_path, {"output": "0"}), tmp_path / "store")
    assert str(info.value) == ("scored_first: model output '0' has 1 classes but the labels file has 10: wrong output "
                               "(set handler.output) or wrong labels")
    with pytest.raises(PreflightError) as info:
        build(write_yaml("scored_any", "scored", model_file, tmp_path), tmp_path / "store")
    assert str(info.value) == ("scored_any: the model has 2 outputs ['0', '1']; set handler.output to the one the "
                               "handler reads")
    assert not (tmp_path / "store").exists() or not list((tmp_path / "store").glob("*.mar"))
    build(write_yaml("scored_right", "scored", model_file, tmp_path, {"output": "1"}), tmp_path / "store")


@pytest.mark.slow
def test_a_state_dict_or_an_eager_pickle_as_model_file_is_refused_at_preflight(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    torch.save(trained("two_heads").state_dict(), folder / "weights.pt")
    with pytest.raises(PreflightError, match=r"weights_only: model file weights.pt is a state_dict \(weights without "
                                             r"the model's code\), not a model: export it with"):
        build(write_yaml("weights_only", "two_heads", folder / "weights.pt", tmp_path), tmp_path / "store")
    torch.save(trained("two_heads"), folder / "whole.pt")
    with pytest.raises(PreflightError, match=r"whole_module: model file whole.pt is an eager pickle of a whole "
                                             r"module \(class tests.own_models.TwoHeads\)"):
        build(write_yaml("whole_module", "two_heads", folder / "whole.pt", tmp_path), tmp_path / "store")


@pytest.mark.slow
def test_an_archive_without_samples_is_refused_unless_the_yaml_says_so(tmp_path, capsys):
    model_file = exported("two_heads", "exported")
    path = write_yaml("no_samples", "two_heads", model_file, tmp_path)
    path.write_text(path.read_text().replace(f"  samples: {tmp_path}/no_samples-samples\n", ""))
    with pytest.raises(PreflightError, match=r"no_samples: no sample inputs, so nothing checks what the model "
                                             r"answers: set archive.samples .* or archive.no_samples: true"):
        build(path, tmp_path / "store")
    build(write_yaml("no_samples", "two_heads", model_file, tmp_path, archive={"no_samples": True}),
          tmp_path / "store")
    assert "preflight no_samples: 0 samples answered 200 (0 checked against expected.json)" in (
        capsys.readouterr().out)


def test_the_test_models_file_is_what_eager_archives_pack():
    assert MODELS_FILE.name == "own_models.py" and "import torch" in MODELS_FILE.read_text()


@pytest.mark.slow
def test_the_open_inference_protocol_answers_the_extra_outputs_too(tmp_path):
    mar = build(write_yaml("two_heads_oip", "two_heads", exported("two_heads", "exported"), tmp_path),
                tmp_path / "store")
    rows = client_inputs("two_heads", 3, seed=4)
    body = {"inputs": [{"name": "features", "shape": [3, 30], "datatype": "FP32", "data": rows.ravel().tolist()}]}
    asking = {**body, "outputs": [{"name": "embedding"}, {"name": "predicted_label"}]}
    worker = ArchiveWorker.from_mar(mar, tmp_path / "work")
    try:
        answers = worker.handle([Request(json.dumps(b).encode(), "application/json", {"explain": "False"})
                                 for b in (body, asking, {**body, "outputs": [{"name": "hidden"}]})])
    finally:
        worker.close()
    every, asked, unknown = (answer.json() for answer in answers)
    assert [out["name"] for out in every["outputs"]] == ["probabilities", "predicted_label", "embedding"]
    assert [out["name"] for out in asked["outputs"]] == ["embedding", "predicted_label"]
    embedding = asked["outputs"][0]
    assert (embedding["shape"], embedding["datatype"]) == ([3, 8], "FP32")
    np.testing.assert_allclose(np.reshape(embedding["data"], (3, 8)),
                               eager_outputs("two_heads", rows)["embedding"].numpy(), atol=1e-5)
    assert answers[2].status == 400 and "unknown output 'hidden'" in unknown["error"]
