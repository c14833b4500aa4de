"""Archives built by the real tool (`python -m toolkit.archive`), opened and inspected."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from handlers.answers import prediction
from handlers.config import load_model_yaml
from tests.paths import BUILD, ROOT, require_built
from toolkit.archive.mar import Archive, read_manifest, safe_extract

MODELS = ("mnist", "tabular")


def archive(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "toolkit.archive", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    for name in MODELS:
        require_built(BUILD / name / f"{name}.pt", "make models")
    store = tmp_path_factory.mktemp("store")
    for args in (("--model", "mnist"), ("--model", "tabular"), ("--model", "mnist", "--version", "2.0")):
        result = archive(*args, "--store", str(store))
        assert result.returncode == 0, result.stderr
        assert "preflight" in result.stdout and "bad request -> 4xx" in result.stdout
    return store


@pytest.mark.parametrize("name", MODELS)
def test_manifest_and_model_config(store, name):
    mar = store / f"{name}.mar"
    model = read_manifest(mar)["model"]
    assert model["modelName"] == name and model["modelVersion"] == "1.0"
    config = load_model_yaml(ROOT / "config" / "models" / f"{name}.yaml")
    assert model["serializedFile"] == Path(config.archive.model_file).name  # mnist: ONNX export, tabular: .pt
    assert model["handler"] == f"{name}_handler.py" and model["configFile"] == "model-config.yaml"
    assert Archive.open(mar).config == config.model_copy(update={"archive": None})
    names = set(zipfile.ZipFile(mar).namelist())
    assert {"handlers/base.py", "handlers/config.py", "handlers/errors.py", "index_to_name.json"} <= names
    assert not any("__pycache__" in n for n in names)


def test_second_version_is_a_separate_file(store):
    model = read_manifest(store / "mnist_v2.0.mar")["model"]
    assert (model["modelName"], model["modelVersion"]) == ("mnist", "2.0")


@pytest.mark.parametrize("name", MODELS)
def test_extracted_archive_is_self_contained_and_answers_its_samples(store, tmp_path, name):
    """Run the extracted handler in a fresh interpreter that imports `handlers` from the archive only."""
    safe_extract(store / f"{name}.mar", tmp_path)
    samples = BUILD / name / "samples"
    expected = json.loads((samples / "expected.json").read_text())
    script = textwrap.dedent(f"""
        import json, sys
        from pathlib import Path
        sys.path.insert(0, {str(tmp_path)!r})
        import handlers
        assert Path(handlers.__file__).parent == Path({str(tmp_path)!r}) / "handlers", handlers.__file__
        from toolkit.archive.preflight import sample_request
        from toolkit.archive.worker import ArchiveWorker
        worker = ArchiveWorker(Path({str(tmp_path)!r}))
        names = sorted({sorted(expected)!r})
        answers = worker.handle([sample_request(n, (Path({str(samples)!r}) / n).read_bytes()) for n in names])
        print(json.dumps({{n: [a.status, a.json()] for n, a in zip(names, answers)}}))
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    for sample, label in expected.items():
        status, body = answers[sample]
        assert status == 200
        assert prediction(body) == label


def test_bad_yaml_is_refused_by_file_key_and_value(tmp_path):
    config = re.sub(r"^batchSize: (\d+)", r"batchsize: \1", (ROOT / "config" / "models" / "mnist.yaml").read_text(),
                    flags=re.M)
    bad = tmp_path / "mnist_typo.yaml"
    bad.write_text(config)
    result = archive("--config", str(bad), "--store", str(tmp_path / "store"))
    assert result.returncode == 2
    assert re.search(rf"error: {re.escape(str(bad))}: unknown key 'batchsize' = \d+", result.stderr), result.stderr
    assert not (tmp_path / "store").exists()


def test_out_of_range_value_names_what_is_allowed(tmp_path):
    shipped = (ROOT / "config" / "models" / "tabular.yaml").read_text()
    text = re.sub(r"^maxBatchDelay: \d+", "maxBatchDelay: -3", shipped, flags=re.M)
    bad = tmp_path / "tabular.yaml"
    bad.write_text(text)
    result = archive("--config", str(bad), "--store", str(tmp_path / "store"))
    assert result.returncode == 2
    assert "maxBatchDelay = -3: Input should be greater than or equal to 1" in result.stderr


def test_preflight_stops_a_handler_that_cannot_serve_the_model(tmp_path):
    require_built(BUILD / "mnist" / "mnist.pt", "make models")
    text = (ROOT / "config" / "models" / "mnist.yaml").read_text().replace("width: 28", "width: 27")
    bad = tmp_path / "mnist.yaml"
    bad.write_text(text)
    result = archive("--config", str(bad), "--store", str(tmp_path / "store"))
    assert result.returncode == 2
    assert "error: mnist: the handler failed to load:" in result.stderr and "Traceback" in result.stderr
    assert not (tmp_path / "store" / "mnist.mar").exists()
