"""Build the Ray Serve application for a set of archives: one `ArchiveModel` deployment per archive, scaled
from its validated model-config (`ray:` section, see `handlers.config.RaySettings`), behind one `Ingress`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ray import serve
from ray.serve.deployment import Application

from handlers.config import ModelYaml
from toolkit.archive.mar import Archive
from toolkit.engines.ray.deployment import ArchiveModel, Ingress

INGRESS_NUM_CPUS = 0.0  # the ingress only forwards (async, no compute); it must not take a replica's CPU share
# The ingress awaits the model deployments, so it holds many requests at once; Ray's default (5) would make
# it the queue. Each model deployment's own max_queued_requests is what refuses a burst.
INGRESS_MAX_ONGOING = 10_000


@dataclass(frozen=True)
class ArchiveSpec:
    """One archive to deploy: its file, model name and version, and validated config."""

    mar: Path
    name: str
    version: str
    config: ModelYaml

    @classmethod
    def read(cls, mar: Path) -> ArchiveSpec:
        """Manifest and model-config of `mar`, validated by the project's schema (ModelConfigError if not)."""
        archive = Archive.open(mar)
        return cls(archive.path, archive.name, archive.version, archive.config)

    @property
    def deployment_name(self) -> str:
        return f"{self.name}_{self.version}"


def deployment_options(config: ModelYaml) -> dict:
    """Ray Serve deployment options of one archive, from its `ray:` settings (derived keys filled in)."""
    ray = config.ray_settings()
    return {
        "autoscaling_config": {
            "min_replicas": ray.min_replicas,
            "initial_replicas": ray.min_replicas,
            "max_replicas": ray.max_replicas,
            "target_ongoing_requests": ray.target_ongoing_requests,
            "upscale_delay_s": ray.upscale_delay_s,
            "downscale_delay_s": ray.downscale_delay_s,
        },
        "max_ongoing_requests": ray.max_ongoing_requests,
        "max_queued_requests": ray.max_queued_requests,
        "ray_actor_options": {"num_cpus": ray.num_cpus, "num_gpus": ray.num_gpus},
    }


def default_versions(specs: Sequence[ArchiveSpec]) -> dict[str, str]:
    """Model name -> the version `/predictions/<name>` serves: that of `<name>.mar` (TorchServe's default is
    the first version registered, which `make ray-serve` registers from `<name>.mar`), else the first found."""
    defaults: dict[str, str] = {}
    for spec in sorted(specs, key=lambda s: (s.mar.name != f"{s.name}.mar", s.mar.name)):
        defaults.setdefault(spec.name, spec.version)
    return defaults


def cpus_needed(archives: Sequence[Path]) -> float:
    """Ray's logical CPUs the archives' minimum replicas take (`min_replicas` x `num_cpus`, summed)."""
    total = 0.0
    for mar in archives:
        ray = ArchiveSpec.read(Path(mar)).config.ray_settings()
        total += ray.min_replicas * ray.num_cpus
    return total


def build_app(archives: Sequence[Path], inference_key: str, expires_at_s: float) -> Application:
    """The whole application: every archive as a batched deployment, and the ingress over them."""
    specs = [ArchiveSpec.read(Path(mar)) for mar in archives]
    routes: dict[str, dict] = {}
    for spec in specs:
        deployment = serve.deployment(ArchiveModel, name=spec.deployment_name, **deployment_options(spec.config))
        bound = deployment.bind(str(spec.mar), spec.config.batch_size, spec.config.max_batch_delay_ms / 1000)
        routes.setdefault(spec.name, {})[spec.version] = bound
    ingress = serve.deployment(
        Ingress,
        name="Ingress",
        max_ongoing_requests=INGRESS_MAX_ONGOING,
        ray_actor_options={"num_cpus": INGRESS_NUM_CPUS},
    )
    return ingress.bind(inference_key, expires_at_s, routes, default_versions(specs))
