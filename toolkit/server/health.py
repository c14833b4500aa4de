"""Readiness of one TorchServe: /ping says Healthy, the expected models are registered, and every registered
model version has its minWorkers workers READY.

TorchServe's own /ping (and its OIP ready endpoint) can say Healthy while a model has no ready worker; this is
the check `make serve`, `python -m toolkit.server ready` and the tests wait on. Liveness stays /ping.
"""

from __future__ import annotations

from collections.abc import Iterable

from toolkit.client.auth import Keys
from toolkit.client.management import ManagementApi, all_versions
from toolkit.client.rest import InferenceClient, ManagementClient
from toolkit.errors import KeyFileError, ServerError, ServerUnreachableError
from toolkit.properties import Urls

PROBE_TIMEOUT_S = 10.0


def version_problem(desc: dict) -> str | None:
    """What keeps one model version from being ready (fewer READY workers than minWorkers), None if nothing."""
    wanted = int(desc.get("minWorkers", 0))
    ready = sum(w.get("status") == "READY" for w in desc.get("workers", []))
    if ready >= wanted:
        return None
    return (
        f"model {desc.get('modelName')} version {desc.get('modelVersion')} has {ready}/{wanted} READY workers"
    )


def models_problem(mgmt: ManagementApi, expected: Iterable[str]) -> str | None:
    """The first reason the registered models are not ready (a model of `expected` missing, or a version
    short of workers), None when all are."""
    descriptions = list(all_versions(mgmt))
    missing = sorted(set(expected) - {d["modelName"] for d in descriptions})
    if missing:
        return f"models not registered yet: {', '.join(missing)}"
    for desc in sorted(descriptions, key=lambda d: (d["modelName"], d["modelVersion"])):
        problem = version_problem(desc)
        if problem:
            return problem
    return None


def health_problem(urls: Urls, keys: Keys, expected: Iterable[str] = ()) -> str | None:
    """None when the server is ready (see the module docstring); else what is still missing, as a sentence."""
    try:
        with InferenceClient(urls.inference, keys.inference, PROBE_TIMEOUT_S) as inf:
            status = inf.ping()
        if status != "Healthy":
            return f"/ping says {status}"
        with ManagementClient(urls.management, keys.management, PROBE_TIMEOUT_S) as mgmt:
            return models_problem(mgmt, expected)
    except (KeyFileError, ServerError, ServerUnreachableError) as exc:
        return str(exc)
