"""The model YAML schema: shipped files valid, every mistake refused with file, key, value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from handlers import HANDLERS
from handlers.config import load_model_yaml
from handlers.errors import ModelConfigError
from tests.paths import ROOT

SHIPPED = sorted((ROOT / "config" / "models").glob("*.yaml"))
PHOTO = "width: 224, height: 224, channels: 3, mean: [0.5, 0.5, 0.5], std: [0.2, 0.2, 0.2]"
VALID = """\
batchSize: 8
maxBatchDelay: 5
handler:
  name: image_classifier
archive:
  model_file: build/models/mnist/mnist.pt
"""


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_model_yamls_are_valid(path):
    config = load_model_yaml(path)
    assert config.archive is not None and (config.handler.name in HANDLERS or config.handler.module)
    assert "archive" not in config.torchserve_config()


def test_yaml_keys_map_to_unit_named_fields(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(VALID)
    config = load_model_yaml(path)
    assert (config.batch_size, config.max_batch_delay_ms) == (8, 5)
    assert config.torchserve_config()["maxBatchDelay"] == 5


@pytest.mark.parametrize(("change", "expected"), [
    (("batchSize: 8", "batchsize: 8"), "unknown key 'batchsize' = 8"),
    (("batchSize: 8", "batchSize: eight"), "batchSize = 'eight': Input should be a valid integer"),
    (("batchSize: 8", "batchSize: 0"), "batchSize = 0: Input should be greater than or equal to 1"),
    (("maxBatchDelay: 5", "maxBatchDelay: 0"), "maxBatchDelay = 0: Input should be greater than or equal to 1"),
    (("  name: image_classifier", "  name: image_classifer"),
     "handler.name = 'image_classifer': Input should be "
     + ", ".join(repr(name) for name in list(HANDLERS)[:-1]) + f" or {list(HANDLERS)[-1]!r}"),
    (("  name: image_classifier", "  name: image_classifier\n  top_k: 2000"),
     "handler.top_k = 2000: Input should be less than or equal to 1000"),
    (("batchSize: 8", "batchSize: 8\nminWorkers: 3\nmaxWorkers: 2"), "minWorkers = 3 exceeds maxWorkers = 2"),
    (("  name: image_classifier", "  name: image_classifier\n  module: mine.py:Mine"),
     f"handler: set exactly one of name (a handler of the library: {', '.join(HANDLERS)}) and module"),
    (("  name: image_classifier", "  labels: x.json"), "handler: set exactly one of name"),
    (("  name: image_classifier", "  module: mine.py"), "handler.module = 'mine.py': String should match pattern"),
    (("  name: image_classifier", "  name: image_classifier\n  image: {width: 28}"),
     "handler.image.height: required, and missing; handler.image.channels: required"),
    *[(("  name: image_classifier", f"  name: image_classifier\n  image: {{{PHOTO}, {image}}}"), expected)
      for image, expected in [
          ("fit: center_crop", "handler.image.fit = 'center_crop' needs handler.image.resize"),
          ("fit: center_crop, resize: 200", "handler.image.resize = 200 is smaller than the 224x224 crop"),
          ("fit: stretch, resize: 256", "handler.image.resize = 256 is read only with fit: center_crop"),
          ("fit: center_crop, resize: 256, pad_value: 114", "handler.image.pad_value is read only with fit: letterbox"),
          ("fit: digit_box", "handler.image.fit = 'digit_box' is the MNIST layout of grayscale digits"),
          ("fit: crop", "handler.image.fit = 'crop': Input should be 'stretch', 'center_crop', 'letterbox' or"),
      ]],
    (("  name: image_classifier", "  name: text_classifier\n  text: {tokenizer: tok.json}"),
     "handler.text.max_length: required, and missing"),
    (("  name: image_classifier", "  name: text_classifier\n  text: {tokenizer: ../tok.json, max_length: 8}"),
     "handler.text.tokenizer = '../tok.json': '../tok.json' is not a path inside the archive"),
    (("  name: image_classifier", "  name: text_classifier\n  text: {tokenizer: t.json, max_length: 8, "
                                  "inputs: [input_ids, input_ids]}"),
     "handler.text.inputs = ['input_ids', 'input_ids']: each input at most once"),
    (("  name: image_classifier", "  name: text_classifier\n  text: {tokenizer: t.json, max_length: 8, "
                                  "inputs: [ids]}"), "handler.text.inputs.0 = 'ids': Input should be 'input_ids'"),
])
def test_mistakes_name_file_key_value_and_allowed(tmp_path: Path, change, expected):
    path = tmp_path / "broken.yaml"
    path.write_text(VALID.replace(*change))
    with pytest.raises(ModelConfigError) as info:
        load_model_yaml(path)
    assert str(info.value).startswith(str(path)), info.value
    assert expected in str(info.value)


def test_the_schema_fills_in_no_model_geometry(tmp_path):
    """A YAML without its handler's section is refused when the handler starts (it names the section), and an
    image section without MNIST's keys gets no MNIST values: geometry and normalisation are required."""
    config = load_model_yaml(_with(tmp_path, ""))
    assert config.handler.image is None and config.handler.tabular is None
    with pytest.raises(ModelConfigError, match="handler image_classifier reads handler.image, which the YAML lacks"):
        config.handler.section("image")


def test_python_object_tags_are_refused_without_running_them(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("handler: !!python/object/apply:os.system ['echo pwned > " + str(tmp_path / "x") + "']\n")
    with pytest.raises(ModelConfigError, match="not valid YAML"):
        load_model_yaml(path)
    assert not (tmp_path / "x").exists()


def test_a_yaml_that_is_not_a_mapping_is_refused(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ModelConfigError, match="expected a mapping of keys, got list"):
        load_model_yaml(path)


def _with(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(VALID + extra, encoding="utf-8")
    return path


def test_ray_settings_are_derived_from_torchserve_keys(tmp_path):
    config = load_model_yaml(_with(tmp_path, "minWorkers: 2\nmaxWorkers: 3\njobQueueSize: 500\n"))
    ray = config.ray_settings()
    assert (ray.min_replicas, ray.max_replicas) == (2, 3)
    assert (ray.target_ongoing_requests, ray.max_ongoing_requests) == (8.0, 16)  # batchSize 8
    assert (ray.max_queued_requests, ray.num_gpus) == (500, 0.0)
    assert "ray" in config.torchserve_config()  # packed into the archive: TorchServe ignores it, Ray reads it


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("ray:\n  max_ongoing_requests: 4\n", "ray.max_ongoing_requests = 4 is below batchSize = 8"),
        ("ray:\n  min_replicas: 3\n  max_replicas: 2\n", "ray.min_replicas = 3 exceeds ray.max_replicas = 2"),
        ("ray:\n  num_cpu: 1\n", "unknown key 'ray.num_cpu'"),
        ("ray:\n  num_cpus: 0\n", "ray.num_cpus = 0"),
    ],
)
def test_bad_ray_settings_are_refused_naming_the_key(tmp_path, extra, message):
    with pytest.raises(ModelConfigError, match=message.replace(".", r"\.")):
        load_model_yaml(_with(tmp_path, extra))


def test_labels_null_survives_the_archives_model_config(tmp_path):
    """`handler.labels: null` (no labels file) is packed as such: left out, it would mean the default file."""
    path = tmp_path / "m.yaml"
    path.write_text(VALID.replace("  name: image_classifier", "  name: image_classifier\n  labels: null"))
    packed = load_model_yaml(path).torchserve_config()
    assert packed["handler"]["labels"] is None
    reread = tmp_path / "packed.yaml"
    reread.write_text(yaml.safe_dump({**packed, "archive": {"model_file": "m.pt"}}))
    assert load_model_yaml(reread).handler.labels is None
