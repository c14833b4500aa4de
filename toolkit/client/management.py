"""The TorchServe management surface shared by the REST and gRPC clients, so `manage` drives either one.

`toolkit.client.rest.ManagementClient` and `toolkit.client.grpc.GrpcManagementClient` both satisfy `ManagementApi`.
Answers are parsed JSON in the shapes of TorchServe's REST API, whatever the protocol:
- register / unregister / scale / set_default: `{"status": "<TorchServe's sentence>"}` (gRPC carries the same
  sentence as plain text, e.g. `Model "mnist" Version: 2.0 registered with 1 initial workers`);
- describe / versions: a list of version descriptions (`modelName`, `modelVersion`, `minWorkers`, `workers`...);
- models: every registered model, all pages, as `[{"modelName", "modelUrl"}, ...]`.
Failures raise `toolkit.errors.ServerError` with an HTTP(-like) status; no answer at all (connection refused,
host not resolved) raises `toolkit.errors.ServerUnreachableError`, whatever the protocol.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Registration:
    """What a registration asks TorchServe for; None leaves a setting to the archive's model-config, then to
    the server (`default_workers_per_model`, batch size 1, batch delay 100 ms, response timeout 120 s).

    The archive's model-config wins over `initial_workers` (its minWorkers/maxWorkers, TorchServe issue
    #2851) and over `response_timeout_s` (its responseTimeout).
    """

    url: str  # archive file name in the model store ("mnist.mar"), or an allowed http(s) URL
    model_name: str | None = None  # default: the archive's manifest
    batch_size: int | None = None  # max requests per batch
    max_batch_delay_ms: int | None = None  # max wait to fill a batch
    initial_workers: int | None = None
    synchronous: bool = True  # wait until the initial workers are up
    response_timeout_s: int | None = None

    @classmethod
    def of(cls, url: str | Registration, **options: Any) -> Registration:
        """`url` if it is a Registration (with `options` replaced), else `Registration(url, **options)`.

        An option that is no field of Registration raises TypeError, as a misspelt keyword argument does.
        """
        if isinstance(url, Registration):
            return dataclasses.replace(url, **options)
        return cls(url, **options)


class ManagementApi(Protocol):
    """Management calls of one TorchServe. `version` None means the model's default version; sizes are
    worker counts, delays milliseconds, timeouts seconds; None leaves a setting to the archive/server."""

    def register(self, url: str | Registration, **options: Any) -> dict:
        """Register an archive: `register(Registration("mnist.mar", initial_workers=1))`, or the same as
        `register("mnist.mar", initial_workers=1)` (`options` are Registration's fields)."""
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
