"""Our image started exactly as deploy/kserve/servingruntime.yaml starts it (its command, args, env, working dir,
user and port, read from the manifest), with a KServe layout (`toolkit.archive.kserve`, what `make kserve-layout`
writes) mounted read-only at /mnt/models as KServe's storage initializer would: ready by the InferenceService's
own readiness command, alive by its /ping liveness probe, and answering KServe's Python client on
/v2/models/mnist/infer (one by one and 64 at once) with the labels of the samples."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from tests.container.conftest import Engine, Image
from toolkit.archive.kserve import MOUNT, PORTS, write_layout
from toolkit.paths import BUILD_MODELS, MODEL_STORE, ROOT
from toolkit.polling import poll_until
from toolkit.process import free_ports

RUNTIME = ROOT / "deploy" / "kserve" / "servingruntime.yaml"
ISVC = ROOT / "deploy" / "kserve" / "inferenceservice.yaml"
KSERVE_PYTHON = ROOT / ".venv-kserve" / "bin" / "python"
KSERVE_CLIENT = ROOT / "tests" / "e2e" / "kserve_client.py"
MNIST_SAMPLES = BUILD_MODELS / "mnist" / "samples"
READY_TIMEOUT_S = 240


def readable(path: Path) -> None:
    """Let the image's user (10001) read the layout: pytest's temp dirs are 0700."""
    for item in [path, *path.rglob("*")]:
        item.chmod(0o755 if item.is_dir() else 0o644)


def run_args(name: str, port: int, layout: Path, tag: str) -> list[str]:
    """`<engine> run` arguments that start the image as the ServingRuntime's container spec does: `command`
    replaces the image's ENTRYPOINT, `args` its CMD."""
    (container,) = yaml.safe_load(RUNTIME.read_text())["spec"]["containers"]
    security = container["securityContext"]
    command, args = container["command"], container["args"]
    env = [f"--env={e['name']}={e['value']}" for e in container["env"]]
    (http,) = container["ports"]
    return ["run", "-d", "--name", name, f"--user={security['runAsUser']}:{security['runAsGroup']}",
            f"--workdir={container['workingDir']}", *env, "-p", f"127.0.0.1:{port}:{http['containerPort']}",
            "-v", f"{layout}:{MOUNT}:ro", f"--entrypoint={command[0]}", tag, *command[1:], *args]


@pytest.fixture(scope="module")
def runtime(engine: Engine, image: Image, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    layout = tmp_path_factory.mktemp("kserve") / "layout"
    store = tmp_path_factory.mktemp("kserve_store")
    for name in ("mnist.mar", "tabular.mar"):  # 2 models x 2 workers: what 2 cores start in time
        shutil.copy2(MODEL_STORE / name, store / name)
    write_layout(layout, store)
    readable(layout.parent)
    name, port = f"ts-toolkit-kserve-{uuid.uuid4().hex[:8]}", free_ports().inference
    engine.run(*run_args(name, port, layout, image.tag))
    try:
        yield name, port
    finally:
        logs = engine.run("logs", "--tail", "30", name, check=False)
        print(logs.stdout[-3000:], logs.stderr[-3000:])
        engine.run("rm", "-f", "-t", "5", name, check=False, timeout=120)


def probe_command() -> list[str]:
    return yaml.safe_load(ISVC.read_text())["spec"]["predictor"]["model"]["readinessProbe"]["exec"]["command"]


def test_ready_by_the_readiness_probe_then_live_by_ping(engine: Engine, runtime: tuple[str, int]) -> None:
    name, port = runtime
    probes: list[subprocess.CompletedProcess] = []

    def ready() -> bool:
        """One run of the InferenceService's readiness command; fails at once if the container died or the
        command itself is broken (not merely "not ready yet")."""
        state = engine.run("container", "inspect", "--format", "{{.State.Running}}", name, check=False)
        assert state.stdout.strip() == "true", engine.run("logs", "--tail", "40", name, check=False).stderr
        probes.append(engine.run("exec", name, *probe_command(), check=False, timeout=60))
        assert "Traceback" not in probes[-1].stderr and "Error while finding" not in probes[-1].stderr, probes[-1]
        return probes[-1].returncode == 0

    start = time.monotonic()
    assert poll_until(ready, READY_TIMEOUT_S, every_s=2), f"not ready after {READY_TIMEOUT_S} s: {probes[-1].stdout}"
    print(f"ready after {time.monotonic() - start:.1f} s ({len(probes)} probes)")
    assert requests.get(f"http://127.0.0.1:{port}/ping", timeout=10).json() == {"status": "Healthy"}
    assert requests.get(f"http://127.0.0.1:{port}/v2/health/live", timeout=10).json() == {"live": True}


def test_kserve_client_gets_the_sample_labels(runtime: tuple[str, int]) -> None:
    if not KSERVE_PYTHON.exists():
        pytest.fail(".venv-kserve is missing: run `make kserve-client`")
    _, port = runtime
    expected = json.loads((MNIST_SAMPLES / "expected.json").read_text())
    names = sorted(expected)
    done = subprocess.run(
        [str(KSERVE_PYTHON), str(KSERVE_CLIENT), "--url", f"http://127.0.0.1:{port}", "--model", "mnist",
         "--concurrent", "64", *(str(MNIST_SAMPLES / n) for n in names)],
        capture_output=True, text=True, timeout=300, check=False, env={**os.environ, "NO_PROXY": "127.0.0.1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    labels = [expected[n] for n in names]
    assert result["sequential_json"] == labels and result["sequential_binary"] == labels
    assert result["concurrent"] == [labels[i % len(labels)] for i in range(64)]


def test_management_api_is_not_published() -> None:
    (container,) = yaml.safe_load(RUNTIME.read_text())["spec"]["containers"]
    assert [p["containerPort"] for p in container["ports"]] == [PORTS.inference]
