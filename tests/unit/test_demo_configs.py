"""The shipped YAMLs of the photo and text demo models serve them with the preprocessing they were built with."""

from __future__ import annotations

from examples.demo_models import fortunes, resnet18
from handlers.config import load_model_yaml
from tests.paths import ROOT


def test_resnet18_is_served_with_imagenets_preprocessing():
    config = load_model_yaml(ROOT / "config" / "models" / "resnet18.yaml")
    served = config.handler.image.model_dump(exclude={"max_pixels"})  # a request limit, not preprocessing
    assert served == resnet18.RESNET_INPUT.model_dump(exclude={"max_pixels"})
    assert (config.handler.image.fit, config.handler.image.resize) == ("center_crop", 256)
    assert config.handler.labels is None  # random weights: no class names


def test_fortunes_is_served_with_its_own_tokenizer_and_length():
    config = load_model_yaml(ROOT / "config" / "models" / "fortunes.yaml")
    text = config.handler.text
    assert text.max_length == fortunes.MAX_LENGTH and text.tokenizer == "tokenizer.json"
    assert config.archive.extra_files == ["build/models/fortunes/tokenizer.json"]
    assert text.inputs == ["input_ids", "attention_mask"]
