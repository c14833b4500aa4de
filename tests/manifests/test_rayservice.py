"""deploy/ray/rayservice.yaml checked offline, with the schemas of the tools that will read it:
- `serveConfigV2` against Ray Serve's own config schema (ray.serve.schema.ServeDeploySchema, the one
  `serve deploy` and KubeRay's Serve API apply), and its application built for real from our archives;
- every `rayStartParams` key against the options of this Ray's `ray start`;
- the head and worker pod templates against the Kubernetes PodTemplate schema (kubernetes-validate, strict).
KubeRay's CRD itself is not checked: its schema is not published on a package index we can reach."""

from __future__ import annotations

import copy
import importlib
import shutil
import tomllib
import typing

import kubernetes_validate
import pytest
import ray
import yaml
from pydantic import BaseModel
from ray.scripts.scripts import start as ray_start
from ray.serve.deployment import Application
from ray.serve.schema import ServeDeploySchema

from tests.manifests.test_manifests import K8S_VERSIONS
from tests.paths import STORE, require_built
from toolkit.engines.tokens import write_key_file
from toolkit.paths import ROOT

RAYSERVICE = ROOT / "deploy" / "ray" / "rayservice.yaml"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


@pytest.fixture(scope="module")
def service() -> dict:
    return yaml.safe_load(RAYSERVICE.read_text(encoding="utf-8"))


def groups(service: dict) -> list[dict]:
    cluster = service["spec"]["rayClusterConfig"]
    return [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]


def unknown_keys(data: object, model: type[BaseModel], path: str = "") -> list[str]:
    """Keys of `data` that `model` (a pydantic schema) does not declare, recursively: Ray's schema accepts
    and ignores them, so a misspelt key would silently do nothing."""
    if not isinstance(data, dict):
        return []
    fields = model.model_fields
    found = [f"{path}.{key}" for key in data if key not in fields]
    for key, value in data.items():
        if key not in fields:
            continue
        inner = [a for a in typing.get_args(fields[key].annotation) or (fields[key].annotation,)
                 for a in (typing.get_args(a) or (a,))]  # Optional[X], list[X] -> X
        for candidate in inner:
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                items = value if isinstance(value, list) else [value]
                found += [u for item in items for u in unknown_keys(item, candidate, f"{path}.{key}")]
    return found


def test_serve_config_is_valid_for_ray_serve(service):
    data = yaml.safe_load(service["spec"]["serveConfigV2"])
    config = ServeDeploySchema.model_validate(data)
    assert unknown_keys(data, ServeDeploySchema) == []
    (app,) = config.applications
    assert (app.route_prefix, app.import_path) == ("/", "toolkit.engines.ray.kuberay:build")


def test_a_misspelt_serve_key_is_caught(service):
    data = yaml.safe_load(service["spec"]["serveConfigV2"])
    data["applications"][0]["route_prefx"] = "/"
    data["http_options"]["prot"] = 8000
    assert unknown_keys(data, ServeDeploySchema) == [".http_options.prot", ".applications.route_prefx"]


def test_the_application_builds_from_our_archives(service, tmp_path):
    (app,) = yaml.safe_load(service["spec"]["serveConfigV2"])["applications"]
    module, name = app["import_path"].split(":")
    builder = getattr(importlib.import_module(module), name)
    store = tmp_path / "model-store"
    store.mkdir()
    for model in ("mnist", "tabular"):
        shutil.copy2(require_built(STORE / f"{model}.mar", "make archive"), store)
    write_key_file(tmp_path / "key_file.json")
    built = builder({"model_store": str(store), "key_file": str(tmp_path / "key_file.json")})
    assert isinstance(built, Application)
    assert set(app["args"]) == {"model_store", "key_file"}


def test_ray_start_params_are_options_of_this_ray(service):
    known = {opt.lstrip("-") for param in ray_start.params for opt in param.opts}
    for group in groups(service):
        assert set(group["rayStartParams"]) <= known, set(group["rayStartParams"]) - known


def test_versions_match_the_project(service):
    assert service["spec"]["rayClusterConfig"]["rayVersion"] == ray.__version__
    images = {c["image"] for g in groups(service) for c in g["template"]["spec"]["containers"]}
    assert images == {f"ts-toolkit-ray:{VERSION}"}


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_pod_templates_are_valid_kubernetes(service, version):
    for group in groups(service):
        template = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "ray"},
                    "template": group["template"]}
        kubernetes_validate.validate(template, version, strict=True)
    broken = copy.deepcopy(groups(service)[0]["template"])
    broken["spec"]["containers"][0]["volumeMount"] = []
    with pytest.raises(kubernetes_validate.ValidationError, match="volumeMount"):
        kubernetes_validate.validate({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "x"},
                                      "template": broken}, K8S_VERSIONS[-1], strict=True)
