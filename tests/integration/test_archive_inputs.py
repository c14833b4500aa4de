"""What `archive:` packs, built by the real archive tool: files and folders of extra_files under their archive
paths, clashes refused, and every missing input a one-line error naming its key and the path tried."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.served import save_scripted, tabular_model
from tests.unit.text_models import BagOfTokens, train_tokenizer
from toolkit.archive.__main__ import main as archive_main


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A model of the test's own: TorchScript tabular model and labels in model/, a vocabulary folder."""
    (tmp_path / "model").mkdir()
    save_scripted(tabular_model(), tmp_path / "model" / "model.pt")
    (tmp_path / "model" / "index_to_name.json").write_text(json.dumps({"0": "a", "1": "b"}))
    (tmp_path / "vocab" / "sub").mkdir(parents=True)
    (tmp_path / "vocab" / "words.txt").write_text("alpha\nbeta\n")
    (tmp_path / "vocab" / "sub" / "merges.txt").write_text("a b\n")
    return tmp_path


def write_yaml(root: Path, archive: dict, handler: dict | None = None, name: str = "custom") -> Path:
    archive = archive if "samples" in archive else {"no_samples": True, **archive}  # these tests check the packing
    config = {"maxWorkers": 1, "archive": {"model_file": str(root / "model" / "model.pt"), **archive},
              "handler": handler or {"name": "tabular_classifier", "tabular": {"num_features": 30}}}
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run(path: Path, store: Path, capsys, *flags: str) -> tuple[int, str]:
    rc = archive_main(["--config", str(path), "--store", str(store), *flags])
    return rc, capsys.readouterr().err


def test_extra_folders_are_kept_as_folders_and_listed_as_inputs(project, capsys):
    other = project / "other"
    other.mkdir()
    (other / "notes.txt").write_text("kept flat")
    path = write_yaml(project, {"extra_files": [str(project / "vocab"), str(other / "notes.txt")]})
    rc, err = run(path, project / "store", capsys)
    assert rc == 0, err
    names = set(zipfile.ZipFile(project / "store" / "custom.mar").namelist())
    assert {"vocab/words.txt", "vocab/sub/merges.txt", "notes.txt", "index_to_name.json", "model.pt"} <= names
    depfile = (project / "store" / "custom.mar.d").read_text()
    for source in ("vocab/words.txt", "vocab/sub/merges.txt", "other/notes.txt", "model/index_to_name.json"):
        assert str(project / source) in depfile


def test_the_same_file_twice_is_packed_once(project, capsys):
    words = str(project / "vocab" / "words.txt")
    rc, err = run(write_yaml(project, {"extra_files": [words, words]}), project / "store", capsys, "--no-preflight")
    assert rc == 0, err


@pytest.mark.parametrize(("extra", "message"), [
    (["vocab/words.txt", "elsewhere/words.txt"],
     "archive.extra_files: {root}/elsewhere/words.txt would be packed as words.txt, which archive.extra_files "
     "already packs from {root}/vocab/words.txt"),
    (["elsewhere/index_to_name.json"], "would be packed as index_to_name.json, which handler.labels already packs"),
    (["elsewhere/handlers"], "would be packed as handlers/base.py, which the handlers package already packs"),
    (["elsewhere/model.pt"], "would be packed as model.pt, which archive.model_file already packs"),
])
def test_two_files_with_one_archive_path_are_refused(project, capsys, extra, message):
    elsewhere = project / "elsewhere"
    (elsewhere / "handlers").mkdir(parents=True)
    (elsewhere / "handlers" / "base.py").write_text("# not ours\n")
    for name in ("words.txt", "index_to_name.json", "model.pt"):
        (elsewhere / name).write_text("different\n")
    path = write_yaml(project, {"extra_files": [str(project / e) for e in extra]})
    rc, err = run(path, project / "store", capsys, "--no-preflight")
    assert rc == 2
    assert err.count("\n") == 1 and message.format(root=project) in err, err
    assert not (project / "store" / "custom.mar").exists()


@pytest.mark.parametrize(("archive", "handler", "message"), [
    ({"extra_files": ["{root}/nowhere.txt"]}, None, "archive.extra_files: {root}/nowhere.txt does not exist"),
    ({"model_file": "{root}/model/missing.pt"}, None, "archive.model_file: {root}/model/missing.pt does not exist"),
    ({"samples": "{root}/no_samples"}, None, "archive.samples: {root}/no_samples does not exist"),
    ({}, {"name": "tabular_classifier", "labels": "names.json", "tabular": {"num_features": 30}},
     "handler.labels: {root}/model/names.json does not exist (the labels file is read from the folder of "
     "archive.model_file"),
    ({}, {"module": "{root}/mine.py:Mine", "tabular": {"num_features": 30}},
     "handler.module: {root}/mine.py does not exist"),
    ({"extra_files": ["{root}/vocab"]},
     {"name": "text_classifier", "text": {"tokenizer": "tokenizer.json", "max_length": 8}},
     "handler.text.tokenizer: tokenizer.json is not in the archive"),
])
def test_every_missing_input_is_one_line_naming_key_and_path(project, capsys, archive, handler, message):
    archive = {key: (value.format(root=project) if isinstance(value, str) else [v.format(root=project) for v in value])
               for key, value in archive.items()}
    if handler and "module" in handler:
        handler = {**handler, "module": handler["module"].format(root=project)}
    rc, err = run(write_yaml(project, archive, handler), project / "store", capsys, "--no-preflight")
    assert rc == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message.format(root=project) in err, err


def test_a_tokenizer_folder_is_packed_and_named_by_its_archive_path(project, capsys):
    """A Hugging Face tokenizer directory in extra_files; handler.text.tokenizer names the file inside it."""
    train_tokenizer(project / "my_tokenizer" / "tokenizer.json")
    save_scripted(BagOfTokens(), project / "model" / "model.pt")
    (project / "model" / "index_to_name.json").write_text(json.dumps({str(i): f"t{i}" for i in range(4)}))
    handler = {"name": "text_classifier", "text": {"tokenizer": "my_tokenizer/tokenizer.json", "max_length": 16,
                                                   "inputs": ["input_ids", "attention_mask"]}}
    rc, err = run(write_yaml(project, {"extra_files": [str(project / "my_tokenizer")]}, handler), project / "store",
                  capsys)
    assert rc == 0, err
    assert "my_tokenizer/tokenizer.json" in zipfile.ZipFile(project / "store" / "custom.mar").namelist()
