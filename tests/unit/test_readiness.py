"""Readiness (toolkit.server.health): ready only when every registered model version has its minWorkers READY,
whatever /ping says. A describe-model answer of TorchServe 0.12 per version is what it reads."""

from __future__ import annotations

from toolkit.server.health import version_problem


def describe(min_workers: int, *statuses: str) -> dict:
    return {"modelName": "mnist", "modelVersion": "1.0", "minWorkers": min_workers,
            "workers": [{"id": str(9000 + i), "status": s} for i, s in enumerate(statuses)]}


def test_a_version_with_its_min_workers_ready_is_ready():
    assert version_problem(describe(2, "READY", "READY")) is None
    assert version_problem(describe(1, "READY", "UNLOADING")) is None


def test_a_version_short_of_ready_workers_is_not_ready_even_with_workers_starting():
    assert version_problem(describe(2, "READY", "STARTING")) == "model mnist version 1.0 has 1/2 READY workers"
    assert version_problem(describe(1)) == "model mnist version 1.0 has 0/1 READY workers"
