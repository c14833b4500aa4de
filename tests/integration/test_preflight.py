"""The archive preflight: `make archive` packs the .mar, runs it through the in-process TorchServe worker, and a
handler that cannot serve stops the build before the archive reaches the store."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.served import save_scripted, tabular_model
from toolkit.archive import build
from toolkit.archive.mar import Archive
from toolkit.errors import PreflightError

COMPLETE = '''
from handlers.tabular import TabularClassifier


class CustomHandler(TabularClassifier):
    """TabularClassifier as an archive's own handler module."""
'''
ABSTRACT = '''
from handlers.base import ServingHandler


class CustomHandler(ServingHandler):
    def decode(self, body):
        raise NotImplementedError

    def example_input(self):
        raise NotImplementedError
'''
NO_OIP_METHODS = '''
import torch

from handlers.base import Decoded, ServingHandler
from handlers.oip import OPEN_INFERENCE


class CustomHandler(ServingHandler):
    """Lists the Open Inference Protocol but defines neither decode_oip nor encode_oip."""

    protocols = (OPEN_INFERENCE,)

    def decode(self, body):
        return Decoded(torch.zeros(1, 30))

    def encode(self, outputs, item):
        return {}

    def example_input(self):
        return torch.zeros(1, 30)
'''


def model_yaml(tmp_path: Path, source: str, samples: bool = False) -> Path:
    """A model of a test's own: a TorchScript tabular model, labels, the handler module `source`, its YAML."""
    (tmp_path / "my_handler.py").write_text(textwrap.dedent(source))
    save_scripted(tabular_model(), tmp_path / "model.pt")
    (tmp_path / "index_to_name.json").write_text(json.dumps({"0": "a", "1": "b"}))
    archive = {"model_file": str(tmp_path / "model.pt")}
    if samples:
        (tmp_path / "samples").mkdir()
        (tmp_path / "samples" / "row.json").write_text(json.dumps({"inputs": [[0.5] * 30]}))
        archive["samples"] = str(tmp_path / "samples")
    config = {"maxWorkers": 1, "archive": archive,
              "handler": {"module": f"{tmp_path}/my_handler.py:CustomHandler", "tabular": {"num_features": 30}}}
    path = tmp_path / "custom.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_handler_missing_an_abstract_method_stops_the_preflight(tmp_path):
    with pytest.raises(PreflightError) as info:
        build(model_yaml(tmp_path, ABSTRACT), tmp_path / "store")
    message = str(info.value)
    assert "custom: the handler failed to load" in message
    assert "Can't instantiate abstract class CustomHandler with abstract method encode" in message
    assert not (tmp_path / "store" / "custom.mar").exists()


def test_a_handler_without_its_protocol_methods_stops_the_preflight_in_one_line(tmp_path):
    with pytest.raises(PreflightError) as info:
        build(model_yaml(tmp_path, NO_OIP_METHODS), tmp_path / "store")
    assert str(info.value) == ("custom: CustomHandler lists the Open Inference Protocol protocol but does not define "
                               "decode_oip, encode_oip; define them or drop Open Inference Protocol from its "
                               "`protocols`")
    assert not (tmp_path / "store" / "custom.mar").exists()


def test_a_complete_handler_of_your_own_is_packed_next_to_handlers_and_preflighted(tmp_path, capsys):
    mar = build(model_yaml(tmp_path, COMPLETE, samples=True), tmp_path / "store")
    assert "preflight custom: 1 samples answered 200 (0 checked against expected.json), bad request -> 4xx" in (
        capsys.readouterr().out)
    archive = Archive.open(mar)
    assert archive.config.handler.module.endswith("my_handler.py:CustomHandler")
    work = archive.extract(tmp_path / "extracted")
    assert (work / "my_handler.py").is_file() and (work / "handlers" / "base.py").is_file()
    assert "from my_handler import CustomHandler" in (work / "custom_handler.py").read_text()
    depfile = mar.with_name("custom.mar.d").read_text()
    for path in ("my_handler.py", "model.pt", "index_to_name.json", "custom.yaml", "samples/row.json"):
        assert str(tmp_path / path) in depfile, path
