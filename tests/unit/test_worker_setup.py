"""Device and thread choice of a worker, and the model config checked at worker start."""

from __future__ import annotations

import pytest
import torch
import yaml

from handlers.errors import ModelConfigError
from handlers.tabular import TabularClassifier
from handlers.worker import choose_threads, select_device
from tests.served import lay_out, save_scripted, serve, tabular_model
from toolkit.archive.worker import ArchiveWorker


@pytest.mark.parametrize(("configured", "workers", "cores", "expected"),
                         [(0, 1, 2, 2), (0, 2, 2, 1), (0, 4, 2, 1), (0, 2, 16, 8), (3, 2, 2, 3)])
def test_threads_default_to_cores_over_workers_at_least_one(configured, workers, cores, expected):
    assert choose_threads(configured, workers, cores) == expected


def test_cpu_without_a_gpu_id():
    assert select_device({"gpu_id": None}) == torch.device("cpu")


@pytest.mark.parametrize(("cuda", "expected"), [(True, torch.device("cuda:1")), (False, torch.device("cpu"))])
def test_gpu_id_is_used_only_when_cuda_is_available(monkeypatch, cuda, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert select_device({"gpu_id": 1}) == expected
    assert select_device({"gpu_id": "0"}) == (torch.device("cuda:0") if cuda else torch.device("cpu"))
    assert select_device({}) == torch.device("cpu")


TABULAR = {"name": "tabular_classifier", "tabular": {"num_features": 30}}


def test_worker_sets_threads_from_config(tmp_path):
    config = {"maxWorkers": 1, "handler": {**TABULAR, "threads": 1}}
    served = serve(tmp_path, TabularClassifier, tabular_model(), config, {"0": "a", "1": "b"})
    assert served.handler.threads == 1 and torch.get_num_threads() == 1
    assert served.handler.device == torch.device("cpu")


def test_worker_refuses_an_invalid_model_config_before_any_archive_code_runs(tmp_path):
    save_scripted(tabular_model(), tmp_path / "model.pt")
    lay_out(tmp_path, TabularClassifier, {"maxWorkers": 1, "handler": {**TABULAR, "labels": None}})
    (tmp_path / "model-config.yaml").write_text(yaml.safe_dump({"maxWorkers": 1, "handler": {**TABULAR, "thread": 2}}))
    (tmp_path / "test_handler.py").write_text("raise SystemExit('the entry module must not be imported')")
    with pytest.raises(ModelConfigError, match="unknown key 'handler.thread' = 2"):
        ArchiveWorker(tmp_path)


@pytest.mark.parametrize(("handler", "message"), [
    ({"name": "tabular_classifier"}, "handler tabular_classifier reads handler.tabular, which the YAML lacks"),
    ({**TABULAR, "options": {"x": 1}}, "handler.options ['x']: TestHandler takes no options"),
    ({**TABULAR, "output": "logits"}, "handler.output = 'logits': the model has no such output; it has ['output']"),
    ({**TABULAR, "extra_outputs": ["x"]}, "handler.extra_outputs ['x']: the model has no such output"),
])
def test_the_worker_start_refuses_what_the_handler_cannot_serve(tmp_path, handler, message):
    save_scripted(tabular_model(), tmp_path / "model.pt")
    lay_out(tmp_path, TabularClassifier, {"maxWorkers": 1, "handler": {**handler, "labels": None}})
    with pytest.raises(ModelConfigError) as info:
        ArchiveWorker(tmp_path)
    assert message in str(info.value)


def test_a_classifier_refuses_a_model_with_another_number_of_classes_than_labels(tmp_path):
    (tmp_path / "index_to_name.json").write_text('{"0": "a", "1": "b", "2": "c"}')
    save_scripted(tabular_model(), tmp_path / "model.pt")  # 2 classes
    lay_out(tmp_path, TabularClassifier, {"maxWorkers": 1, "handler": TABULAR})
    with pytest.raises(ModelConfigError, match="has 2 classes but the labels file has 3"):
        ArchiveWorker(tmp_path)
