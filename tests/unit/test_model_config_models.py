"""The model YAML keys for models of your own: TorchServe 0.12's `pt2:` (torch.compile), an eager model's source and
factory, and archiving without samples."""

from __future__ import annotations

import pytest

from handlers.config import parse_model_yaml
from handlers.errors import ModelConfigError

BASE = {"handler": {"name": "tabular_classifier", "tabular": {"num_features": 30}},
        "archive": {"model_file": "build/model.pt2", "samples": "samples"}}


def config(**changes: object) -> dict:
    data = {key: dict(value) for key, value in BASE.items()}
    for dotted, value in changes.items():
        section, _, key = dotted.rpartition("__")
        target = data.setdefault(section, {}) if section else data
        target[key] = value
    return data


def test_torchserve_pt2_compile_key_is_accepted_and_packed():
    parsed = parse_model_yaml(config(pt2={"compile": {"enable": True, "backend": "inductor", "mode": "max-autotune"}}),
                              "m.yaml")
    assert parsed.pt2.compile.enable and parsed.pt2.compile.mode == "max-autotune"
    assert parsed.torchserve_config()["pt2"] == {"compile": {"enable": True, "backend": "inductor",
                                                             "mode": "max-autotune", "fullgraph": False}}


@pytest.mark.parametrize(("pt2", "message"), [
    ("inductor", "m.yaml: pt2 = 'inductor': TorchServe's deprecated form; write pt2: {compile: {enable: true, "
                 "backend: inductor}}"),
    ({"export": {"aot_compile": True}}, "pt2.export (TorchServe's AOTInductor .so) is not used here: export an "
                                        "AOTInductor package with `python -m toolkit.export --format aoti`"),
    ({"compile": {"backend": "inductor"}}, "m.yaml: pt2.compile.enable: required, and missing"),
    ({"compile": {"enable": True, "mode": "fast"}}, "m.yaml: pt2.compile.mode = 'fast': Input should be 'default'"),
    ({"compile": {"enable": True, "warp": 9}}, "unknown key 'pt2.compile.warp' = 9"),
])
def test_other_pt2_forms_are_refused_with_the_replacement(pt2, message):
    with pytest.raises(ModelConfigError) as info:
        parse_model_yaml(config(pt2=pt2), "m.yaml")
    assert message in str(info.value)


def test_an_eager_model_needs_its_source_and_its_factory():
    parsed = parse_model_yaml(config(archive__model_source="models/net.py", handler__model_factory="build"), "m.yaml")
    assert (parsed.archive.model_source, parsed.handler.model_factory) == ("models/net.py", "build")
    assert parsed.torchserve_config()["handler"]["model_factory"] == "build"
    for half in ({"archive__model_source": "models/net.py"}, {"handler__model_factory": "build"}):
        with pytest.raises(ModelConfigError, match="an eager model needs both archive.model_source"):
            parse_model_yaml(config(**half), "m.yaml")
    with pytest.raises(ModelConfigError, match=r"handler.model_factory = 'net:build': String should match pattern"):
        parse_model_yaml(config(archive__model_source="models/net.py", handler__model_factory="net:build"), "m.yaml")


def test_archiving_without_samples_is_said_explicitly():
    parsed = parse_model_yaml(config(archive__samples=None, archive__no_samples=True), "m.yaml")
    assert parsed.archive.no_samples and parsed.archive.samples is None
    assert not parse_model_yaml(config(), "m.yaml").archive.no_samples
    with pytest.raises(ModelConfigError, match="archive: set samples or no_samples: true, not both"):
        parse_model_yaml(config(archive__no_samples=True), "m.yaml")
