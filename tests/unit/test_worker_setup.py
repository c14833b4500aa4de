"""Device and thread choice of a worker, and the model config checked at worker start."""

from __future__ import annotations

import pytest
import torch

from handlers.errors import ModelConfigError
from handlers.tabular import TabularClassifier
from handlers.worker import choose_threads, select_device
from tests.unit.conftest import serve, tabular_model
from toolkit.archive.offline import make_context


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


def test_worker_sets_threads_from_config(tmp_path):
    config = {"maxWorkers": 1, "handler": {"name": "tabular_classifier", "threads": 1}}
    served = serve(tmp_path, TabularClassifier, tabular_model(), config, {"0": "a", "1": "b"})
    assert served.handler.threads == 1 and torch.get_num_threads() == 1
    assert served.handler.device == torch.device("cpu")


def test_worker_refuses_an_invalid_model_config(tmp_path):
    config = {"maxWorkers": 1, "handler": {"name": "tabular_classifier", "thread": 2}}
    with pytest.raises(ModelConfigError, match="unknown key 'handler.thread' = 2"):
        TabularClassifier().initialize(_context(tmp_path, config))


def _context(tmp_path, config):
    manifest = {"model": {"modelName": "t", "modelVersion": "1", "serializedFile": "model.pt"}}
    return make_context(tmp_path, manifest, config)
