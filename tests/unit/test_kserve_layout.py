"""toolkit.archive.kserve (`make kserve-layout`) on small stand-in archives, and the token-less readiness keys."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import yaml

from toolkit.archive.kserve import main, model_snapshot, pick_archives, write_layout
from toolkit.paths import CONFIG_PROPERTIES
from toolkit.properties import Ports, read_properties
from toolkit.server.local import LocalServer

HANDLER = {"name": "tabular_classifier", "tabular": {"num_features": 4}}  # a valid handler: section


def fake_mar(store: Path, file: str, name: str, version: str, **config) -> Path:
    path = store / file
    config.setdefault("handler", HANDLER)
    manifest = {"model": {"modelName": name, "modelVersion": version, "configFile": "model-config.yaml"}}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("MAR-INF/MANIFEST.json", json.dumps(manifest))
        zf.writestr("model-config.yaml", yaml.safe_dump(config))
    return path


@pytest.fixture
def store(tmp_path) -> Path:
    store = tmp_path / "store"
    store.mkdir()
    fake_mar(store, "mnist.mar", "mnist", "1.0", minWorkers=2, maxWorkers=2, batchSize=32, maxBatchDelay=1,
             responseTimeout=30)
    fake_mar(store, "mnist_v2.0.mar", "mnist", "2.0", minWorkers=1, maxWorkers=3, batchSize=8, maxBatchDelay=5)
    fake_mar(store, "tabular.mar", "tabular", "1.0", batchSize=16)
    return store


def test_default_archives_and_use(store):
    assert [a.path.name for a in pick_archives(store)] == ["mnist.mar", "tabular.mar"]
    assert [a.path.name for a in pick_archives(store, ["mnist_v2.0.mar"])] == ["mnist_v2.0.mar", "tabular.mar"]
    with pytest.raises(FileNotFoundError, match="nope.mar"):
        pick_archives(store, ["nope.mar"])


def test_snapshot_carries_each_archive_settings(store):
    snapshot = model_snapshot(pick_archives(store, ["mnist_v2.0.mar"]))
    assert snapshot["modelCount"] == 2
    assert snapshot["models"]["mnist"] == {"2.0": {"defaultVersion": True, "marName": "mnist_v2.0.mar",
                                                   "minWorkers": 1, "maxWorkers": 3, "batchSize": 8,
                                                   "maxBatchDelay": 5, "responseTimeout": 120}}
    assert snapshot["models"]["tabular"]["1.0"]["batchSize"] == 16


def test_layout_files_and_keys(store, tmp_path):
    out = tmp_path / "kserve"
    (out / "stale").mkdir(parents=True)
    assert main(["--store", str(store), "--out", str(out)]) == 0
    assert sorted(p.name for p in (out / "model-store").iterdir()) == ["mnist.mar", "tabular.mar"]
    assert not (out / "stale").exists()
    props = read_properties(out / "config" / "config.properties")
    assert props["inference_address"] == "http://0.0.0.0:8080"
    assert props["metrics_address"] == "http://0.0.0.0:8082"
    assert props["management_address"] == "http://127.0.0.1:8081"
    assert (props["grpc_inference_address"], props["grpc_inference_port"]) == ("0.0.0.0", "7070")
    assert props["grpc_management_address"] == "127.0.0.1"
    assert props["model_store"] == "/mnt/models/model-store"
    assert props["ts_open_inference_protocol"] == "true" and props["disable_token_authorization"] == "true"
    assert json.loads(props["model_snapshot"])["models"]["mnist"]["1.0"]["marName"] == "mnist.mar"
    project = read_properties(CONFIG_PROPERTIES)
    for key in ("allowed_urls", "install_py_dep_per_model", "job_queue_size", "max_request_size"):
        assert props[key] == project[key], key
    if "metrics_config" in project:
        assert props["metrics_config"] == f"/app/{project['metrics_config']}"
    assert Ports.from_properties(props).inference == 8080


def test_empty_store_is_an_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["--store", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 1
    assert "make archive" in capsys.readouterr().err


def test_readiness_needs_no_key_file_when_tokens_are_off(store, tmp_path):
    write_layout(tmp_path / "layout", store)
    server = LocalServer(tmp_path / "run", tmp_path / "layout" / "config" / "config.properties", store)
    keys = server.read_keys()
    assert (keys.inference, keys.management) == ("", "")
