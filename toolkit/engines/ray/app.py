"""Build the Ray Serve application for a set of archives: one `ArchiveModel` deployment per archive, scaled
from its validated model-config (`ray:` section, see `handlers.config.RaySettings`), behind one `Ingress`.
The driver opens each archive once (`toolkit.archive.mar.Archive.open`) and passes the `Archive`s around."""

from __future__ import annotations

from collections.abc import Sequence

from ray import serve
from ray.serve.deployment import Application

from handlers.config import ModelYaml
from toolkit.archive.mar import Archive
from toolkit.engines.ray.deployment import ArchiveModel, Ingress

INGRESS_NUM_CPUS = 0.0  # the ingress only forwards (async, no compute); it must not take a replica's CPU share
# The ingress awaits the model deployments, so it holds many requests at once; Ray's default (5) would make
# it the queue. Each model deployment's own max_queued_requests is what refuses a burst.
INGRESS_MAX_ONGOING = 10_000


def deployment_name(archive: Archive) -> str:
    """The Serve deployment of one archive: `<model>_<version>`."""
    return f"{archive.name}_{archive.version}"


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


def default_versions(archives: Sequence[Archive]) -> dict[str, str]:
    """Model name -> the version `/predictions/<name>` serves: that of `<name>.mar` (TorchServe's default is
    the first version registered, which `make ray-serve` registers from `<name>.mar`), else the first found."""
    defaults: dict[str, str] = {}
    for archive in sorted(archives, key=lambda a: (a.path.name != f"{a.name}.mar", a.path.name)):
        defaults.setdefault(archive.name, archive.version)
    return defaults


def cpus_needed(archives: Sequence[Archive]) -> float:
    """Ray's logical CPUs the archives' minimum replicas take (`min_replicas` x `num_cpus`, summed)."""
    return sum(ray.min_replicas * ray.num_cpus for ray in (a.config.ray_settings() for a in archives))


def build_app(archives: Sequence[Archive], inference_key: str, expires_at_s: float) -> Application:
    """The whole application: every archive as a batched deployment, and the ingress over them."""
    routes: dict[str, dict] = {}
    for archive in archives:
        config = archive.config
        deployment = serve.deployment(ArchiveModel, name=deployment_name(archive), **deployment_options(config))
        bound = deployment.bind(str(archive.path), config.batch_size, config.max_batch_delay_ms / 1000)
        routes.setdefault(archive.name, {})[archive.version] = bound
    ingress = serve.deployment(
        Ingress,
        name="Ingress",
        max_ongoing_requests=INGRESS_MAX_ONGOING,
        ray_actor_options={"num_cpus": INGRESS_NUM_CPUS},
    )
    return ingress.bind(inference_key, expires_at_s, routes, default_versions(archives))
