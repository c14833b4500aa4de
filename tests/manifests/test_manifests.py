"""deploy/kserve and deploy/k8s checked offline: core kinds against the Kubernetes OpenAPI schemas that
kubernetes-validate ships (strict: an unknown or misspelt field fails), the containers and probes of the KServe
resources against the same core Container schema, KServe's own API models (its Python package), and every value
the manifests share with the image and the layout (`make kserve-layout`)."""

from __future__ import annotations

import copy
import subprocess
import tomllib
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.manifests.conftest import all_manifests
from tests.paths import require_built
from toolkit.archive.kserve import MOUNT, PORTS
from toolkit.paths import ROOT

K8S_VERSIONS = ("1.30.0", "1.37.0")  # oldest and newest Kubernetes we claim; both schemas ship with the pin
KSERVE_KINDS = {"ServingRuntime", "InferenceService"}
# InferenceService predictor.model fields that are KServe's, not a core Container's.
MODEL_FIELDS = ("modelFormat", "runtime", "protocolVersion", "storageUri", "storage")
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
IMAGE = f"ts-toolkit:{VERSION}"
READY = ["python", "-m", "toolkit.server", "ready", "--run-dir", "/app/run", "--config",
         f"{MOUNT}/config/config.properties", "--model-store", f"{MOUNT}/model-store"]
ARGS = ["torchserve", "--start", "--foreground", "--ncs", f"--model-store={MOUNT}/model-store",
        f"--ts-config={MOUNT}/config/config.properties"]


def ids(items: list[tuple[Path, dict]]) -> list[str]:
    return [f"{p.parent.name}/{p.name}:{d['kind']}" for p, d in items]


CORE = [(p, d) for p, d in all_manifests() if d["kind"] not in KSERVE_KINDS]
KSERVE = [(p, d) for p, d in all_manifests() if d["kind"] in KSERVE_KINDS]


def as_pod(containers: list[dict], name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": containers}}


def kserve_containers(doc: dict) -> list[dict]:
    """The core-Container parts of a KServe resource: a ServingRuntime's containers, an InferenceService's
    predictor model without KServe's own fields (named as KServe names it)."""
    if doc["kind"] == "ServingRuntime":
        return copy.deepcopy(doc["spec"]["containers"])
    model = {k: v for k, v in doc["spec"]["predictor"]["model"].items() if k not in MODEL_FIELDS}
    return [{"name": "kserve-container", **copy.deepcopy(model)}]


def test_manifests_exist():
    kinds = sorted(d["kind"] for _, d in all_manifests())
    assert kinds == sorted(["ServingRuntime", "InferenceService", "InferenceService", "Deployment", "Service",
                            "HorizontalPodAutoscaler", "NetworkPolicy", "PersistentVolumeClaim"]), kinds


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize(("path", "doc"), CORE, ids=ids(CORE))
def test_core_manifest_is_valid_for_kubernetes(path, doc, version):
    kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize(("path", "doc"), KSERVE, ids=ids(KSERVE))
def test_kserve_containers_are_valid_core_containers(path, doc, version):
    kubernetes_validate.validate(as_pod(kserve_containers(doc), doc["metadata"]["name"]), version, strict=True)


def test_a_misspelt_field_is_caught():
    (_, deployment), = [(p, d) for p, d in CORE if d["kind"] == "Deployment"]
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinessprobe"):
        kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)


# ---- what the manifests share with the image and the layout ---------------------------------------------------


def test_runtime_runs_our_image_with_the_torchserve_command(manifests):
    runtime = manifests["kserve/servingruntime.yaml:ServingRuntime"]
    (container,) = runtime["spec"]["containers"]
    assert container["name"] == "kserve-container" and container["image"] == IMAGE
    assert container["command"] == ["/usr/bin/tini", "-g", "--"] and container["args"] == ARGS
    assert container["workingDir"] == "/app/run"
    assert {e["name"]: e["value"] for e in container["env"]}["TMPDIR"] == "/app/run"
    assert [p["containerPort"] for p in container["ports"]] == [PORTS.inference]
    assert runtime["spec"]["protocolVersions"] == ["v2"]
    assert runtime["spec"]["annotations"] == {"prometheus.kserve.io/port": str(PORTS.metrics),
                                              "prometheus.kserve.io/path": "/metrics"}


@pytest.mark.parametrize(("file", "storage"), [("inferenceservice.yaml", "kserve"),
                                               ("inferenceservice-canary.yaml", "kserve-canary")])
def test_inference_service(manifests, file, storage):
    runtime = manifests["kserve/servingruntime.yaml:ServingRuntime"]
    predictor = manifests[f"kserve/{file}:InferenceService"]["spec"]["predictor"]
    model = predictor["model"]
    assert model["runtime"] == runtime["metadata"]["name"] and model["protocolVersion"] == "v2"
    assert model["modelFormat"]["name"] in {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    assert model["storageUri"] == f"pvc://ts-toolkit-models/{storage}"
    assert model["readinessProbe"]["exec"]["command"] == READY
    assert model["livenessProbe"]["httpGet"] == {"path": "/ping", "port": PORTS.inference}
    assert model["resources"]["requests"]["cpu"] and model["resources"]["limits"]["memory"]
    assert predictor["scaleMetric"] == "concurrency" and predictor["scaleTarget"] > 0
    assert predictor.get("canaryTrafficPercent") == (10 if "canary" in file else None)


def test_deployment_runs_the_runtime_container(manifests):
    (runtime,) = manifests["kserve/servingruntime.yaml:ServingRuntime"]["spec"]["containers"]
    pod = manifests["k8s/deployment.yaml:Deployment"]["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    for key in ("image", "command", "args", "workingDir", "env", "resources"):
        assert container[key] == runtime[key], key
    assert container["readinessProbe"]["exec"]["command"] == READY == container["startupProbe"]["exec"]["command"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/ping"
    assert container["volumeMounts"][0]["mountPath"] == MOUNT
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(PORTS.metrics)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": PORTS.inference, "grpc": PORTS.grpc_inference, "metrics": PORTS.metrics}


def test_service_hpa_and_policy_point_at_the_deployment(manifests):
    deployment = manifests["k8s/deployment.yaml:Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = manifests["k8s/service.yaml:Service"]
    assert service["spec"]["selector"] == labels
    assert PORTS.management not in {p["port"] for p in service["spec"]["ports"]}  # never exposed
    hpa = manifests["k8s/hpa.yaml:HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    assert manifests["k8s/networkpolicy.yaml:NetworkPolicy"]["spec"]["podSelector"]["matchLabels"] == labels
    claim = manifests["k8s/pvc.yaml:PersistentVolumeClaim"]["metadata"]["name"]
    assert deployment["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == claim


# ---- KServe's own API models ------------------------------------------------------------------------------
# The CRD YAMLs live in KServe's repository, which is not a package index this project can install from, so the
# check uses KServe's published Python package instead: its model classes are generated from the same OpenAPI
# definitions. It runs in the KServe client venv (`make kserve-client`; its pins clash with ours).

KSERVE_PYTHON = ROOT / ".venv-kserve" / "bin" / "python"
KSERVE_CHECK = Path(__file__).with_name("kserve_models_check.py")


def kserve_check(*paths: Path) -> subprocess.CompletedProcess:
    require_built(KSERVE_PYTHON, "make kserve-client")
    return subprocess.run([str(KSERVE_PYTHON), str(KSERVE_CHECK), *map(str, paths)], capture_output=True,
                          text=True, timeout=120, check=False)


def test_kserve_resources_match_kserve_s_own_api_models():
    paths = sorted({path for path, _ in KSERVE})
    done = kserve_check(*paths)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("\nok ") + done.stdout.startswith("ok ") == len(KSERVE), done.stdout


def test_a_misspelt_kserve_field_is_caught(tmp_path):
    (_, service), = [(p, d) for p, d in KSERVE if p.name == "inferenceservice.yaml"]
    broken = copy.deepcopy(service)
    broken["spec"]["predictor"]["model"]["storageUrl"] = broken["spec"]["predictor"]["model"].pop("storageUri")
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(broken), encoding="utf-8")
    done = kserve_check(tmp_path / "broken.yaml")
    assert done.returncode == 1
    assert "spec.predictor.model.storageUrl: no such field" in done.stdout, done.stdout
