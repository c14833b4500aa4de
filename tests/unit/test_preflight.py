"""The archive preflight on a staged folder: a handler that cannot serve stops the build before the .mar."""

from __future__ import annotations

import json

import pytest
import yaml

from handlers.config import parse_model_yaml
from tests.unit.conftest import save_scripted, tabular_model
from toolkit.archive.preflight import preflight
from toolkit.archive.staging import Staged
from toolkit.errors import PreflightError

COMPLETE = '''
from handlers.tabular import TabularClassifier


class CustomHandler(TabularClassifier):
    """TabularClassifier as an archive's entry class."""
'''
ABSTRACT = '''
from handlers.base import ServingHandler


class HalfHandler(ServingHandler):
    def decode(self, body):
        raise NotImplementedError

    def example_input(self):
        raise NotImplementedError
'''
CONFIG = {"maxWorkers": 1, "handler": {"name": "tabular_classifier"}}


def staged(tmp_path, entry_source: str) -> tuple[Staged, object]:
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "index_to_name.json").write_text(json.dumps({"0": "a", "1": "b"}))
    entry = tmp_path / "custom_handler.py"
    entry.write_text(entry_source)
    config_file = tmp_path / "model-config.yaml"
    config_file.write_text(yaml.safe_dump(CONFIG))
    model = save_scripted(tabular_model(), tmp_path / "model.pt")
    return Staged("custom", "1.0", model, entry, config_file, extra), parse_model_yaml(CONFIG, "test")


def test_a_handler_missing_an_abstract_method_stops_the_preflight(tmp_path):
    stage, config = staged(tmp_path, ABSTRACT)
    with pytest.raises(PreflightError) as info:
        preflight(stage, config, None)
    message = str(info.value)
    assert "custom: handler crashed offline" in message
    assert "Can't instantiate abstract class HalfHandler with abstract method encode" in message


def test_a_complete_handler_passes_the_preflight(tmp_path):
    stage, config = staged(tmp_path, COMPLETE)
    report = preflight(stage, config, None)
    assert report == "0 samples answered 200 (0 checked against expected.json), bad request -> 4xx"
