"""Build the Ray Serve applications for a set of archives, each archive scaled from its validated model-config
(`ray:` section, see `handlers.config.RaySettings`). The driver opens each archive once
(`toolkit.archive.mar.Archive.open`) and passes the `Archive`s around.

Two layouts (toolkit.engines.ray.tuning):
    per archive   each archive's deployment is the ingress of an application of its own, routed by path
                  (`/predictions/<name>` for the default version, `/predictions/<name>/<version>` for the
                  others), beside the catch-all `/` application (the routing Ingress with no routes: /ping and
                  TorchServe's 404s): one hop from the front to the batch.
    routed        one application, the routing Ingress in front of every archive's deployment (two hops): what
                  KubeRay's RayService runs (`build_app`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ray import serve
from ray.serve.deployment import Application

from handlers.config import ModelYaml
from toolkit.archive.mar import Archive
from toolkit.engines.ray.deployment import ArchiveModel, Ingress
from toolkit.engines.ray.front import KeyGate, ModelFront

INGRESS_NUM_CPUS = 0.0  # the ingress only forwards (async, no compute); it must not take a replica's CPU share
# The ingress awaits the model deployments, so it holds many requests at once; Ray's default (5) would make
# it the queue. Each model deployment's own max_queued_requests is what refuses a burst.
INGRESS_MAX_ONGOING = 10_000
CATCH_ALL_APP = "ts"  # the routed application's name, and the catch-all's


@dataclass(frozen=True)
class ServedApp:
    """One Serve application to run: its name, the route prefix the front sends it, and the bound graph."""

    name: str
    route_prefix: str
    app: Application


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


def admitted(config: ModelYaml) -> int | None:
    """Requests one replica of an archive that is its own ingress admits (in flight, batching included):
    `max_ongoing_requests + max_queued_requests` of its `ray:` settings; None when the queue is unbounded."""
    ray = config.ray_settings()
    return None if ray.max_queued_requests < 0 else ray.max_ongoing_requests + ray.max_queued_requests


def front_options(config: ModelYaml) -> dict:
    """Deployment options of an archive that is its own ingress. The replica refuses beyond `admitted` itself,
    with TorchServe's 503 (Serve's own refusal is a text body no client of ours would retry), so Serve lets
    twice that many in and queues nothing."""
    options = deployment_options(config)
    admit = admitted(config)
    if admit is not None:
        options.update(max_ongoing_requests=2 * admit, max_queued_requests=-1)
    return options


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


def _ingress(inference_key: str, expires_at_s: float, routes: dict, defaults: dict[str, str]) -> Application:
    ingress = serve.deployment(Ingress, name="Ingress", max_ongoing_requests=INGRESS_MAX_ONGOING,
                               ray_actor_options={"num_cpus": INGRESS_NUM_CPUS})
    return ingress.bind(inference_key, expires_at_s, routes, defaults)


def _model(archive: Archive, options: dict, front: ModelFront | None = None,
           batch_wait_s: float | None = None) -> Application:
    """An archive's deployment, bound; batches wait `batch_wait_s` to fill (None: the archive's maxBatchDelay)."""
    config = archive.config
    wait_s = config.max_batch_delay_ms / 1000 if batch_wait_s is None else batch_wait_s
    deployment = serve.deployment(ArchiveModel, name=deployment_name(archive), **options)
    return deployment.bind(str(archive.path), config.batch_size, wait_s, front)


def build_app(archives: Sequence[Archive], inference_key: str, expires_at_s: float,
              batch_wait_s: float | None = None) -> Application:
    """The routed layout: every archive as a batched deployment, and the ingress over them."""
    routes: dict[str, dict] = {}
    for archive in archives:
        model = _model(archive, deployment_options(archive.config), batch_wait_s=batch_wait_s)
        routes.setdefault(archive.name, {})[archive.version] = model
    return _ingress(inference_key, expires_at_s, routes, default_versions(archives))


def build_apps(archives: Sequence[Archive], inference_key: str, expires_at_s: float,
               batch_wait_s: float | None = None) -> list[ServedApp]:
    """The per-archive layout: each archive the ingress of its own application, and the catch-all at `/`."""
    gate, defaults = KeyGate(inference_key, expires_at_s), default_versions(archives)
    apps = [ServedApp(CATCH_ALL_APP, "/", _ingress(inference_key, expires_at_s, {}, {}))]
    for archive in archives:
        default = defaults[archive.name] == archive.version
        route = f"/predictions/{archive.name}" + ("" if default else f"/{archive.version}")
        front = ModelFront(gate, archive.name, archive.version, admitted(archive.config))
        model = _model(archive, front_options(archive.config), front, batch_wait_s)
        apps.append(ServedApp(deployment_name(archive), route, model))
    return apps
