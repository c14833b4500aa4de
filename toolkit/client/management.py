"""The TorchServe management surface shared by the REST and gRPC clients, so `manage` drives either one.

`toolkit.client.rest.ManagementClient` and `toolkit.client.grpc.GrpcManagementClient` both satisfy `ManagementApi`.
Answers are parsed JSON in the shapes of TorchServe's REST API, whatever the protocol:
- register / unregister / scale / set_default: `{"status": "<TorchServe's sentence>"}` (gRPC carries the same
  sentence as plain text, e.g. `Model "mnist" Version: 2.0 registered with 1 initial workers`);
- describe / versions: a list of version descriptions (`modelName`, `modelVersion`, `minWorkers`, `workers`...);
- models: every registered model, all pages, as `[{"modelName", "modelUrl"}, ...]`.
Failures raise `toolkit.errors.ServerError` with an HTTP(-like) status.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol


class ManagementApi(Protocol):
    """Management calls of one TorchServe. `version` None means the model's default version; sizes are
    worker counts, delays milliseconds, timeouts seconds; None leaves a setting to the archive/server."""

    def register(
        self,
        url: str,
        model_name: str | None = None,
        batch_size: int | None = None,
        max_batch_delay_ms: int | None = None,
        initial_workers: int | None = None,
        synchronous: bool = True,
        response_timeout_s: int | None = None,
    ) -> dict:
        """Register archive `url` (a file name in the model store); `synchronous` waits for the workers."""
        ...

    def unregister(self, name: str, version: str | None = None) -> dict:
        """Unregister one version of a model."""
        ...

    def scale(
        self, name: str, min_workers: int, max_workers: int, version: str | None = None, synchronous: bool = True
    ) -> dict:
        """Set a version's worker range [min_workers, max_workers]."""
        ...

    def describe(self, name: str, version: str | None = None) -> list[dict]:
        """Descriptions of one version ("all": every version)."""
        ...

    def versions(self, name: str) -> list[dict]:
        """Descriptions of every registered version of a model."""
        ...

    def set_default(self, name: str, version: str) -> dict:
        """Make `version` the one predictions without a version go to."""
        ...

    def close(self) -> None:
        """Release the connections."""
        ...

    def models(self) -> list[dict]:
        """Every registered model, all pages."""
        ...


def all_versions(mgmt: ManagementApi) -> Iterator[dict]:
    """The description of every registered version of every model (one `versions` call per model)."""
    for model in mgmt.models():
        yield from mgmt.versions(model["modelName"])


def worker_pids(mgmt: ManagementApi, model: str, version: str | None = None) -> list[int]:
    """Pids of the workers of one model version (default version when None), from describe."""
    (desc,) = mgmt.describe(model, version)
    return [int(w["pid"]) for w in desc.get("workers", []) if w.get("pid")]
