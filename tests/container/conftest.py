"""Container tier: the image of deploy/container/Dockerfile, built and run with podman (or docker) by the
project's own scripts, like a user would (`make image`, `make image-serve`, `make image-stop`).

- `engine`: the engine environment of scripts/container_env.sh (ENGINE, CONTAINERS_CONF, ...; installs
  Debian's podman when no engine is present).
- `image`: `bash scripts/image.sh` once per session (cached layers), with the build time.
- `served`: one container of the image from scripts/image-serve.sh, on five free loopback ports, its run dir
  in a pytest temp dir; removed (by its own name) when the session ends. Tests that stop a container start
  their own with `serve_container` (the same script), so no test depends on the order of the others.

These tests need root or a working podman/docker and a few minutes on a cold cache (the image build).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from toolkit.client.auth import Keys, read_keys
from toolkit.paths import ROOT
from toolkit.process import free_ports

ENV_KEYS = ("ENGINE", "IMAGE_TAG", "CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF", "PATH")
BUILD_TIMEOUT_S = 1200
READY_TIMEOUT_S = 240


def _engine_env() -> dict[str, str]:
    script = f"source scripts/container_env.sh >&2 && for k in {' '.join(ENV_KEYS)}; do echo \"$k=${{!k:-}}\"; done"
    out = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    if out.returncode != 0:
        pytest.fail(f"scripts/container_env.sh failed:\n{out.stderr}")
    values = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    return {k: v for k, v in values.items() if v}


@dataclass
class Engine:
    env: dict[str, str]

    @property
    def name(self) -> str:
        return self.env["ENGINE"]

    def run(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        """`<engine> args...` with the project's engine configuration; output captured as text."""
        done = subprocess.run(
            [self.name, *args], env={**os.environ, **self.env}, capture_output=True, text=True, timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{self.name} {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
        return done


@pytest.fixture(scope="session")
def engine() -> Engine:
    return Engine(_engine_env())


@dataclass
class Image:
    tag: str
    build_s: float
    output: str


@pytest.fixture(scope="session")
def image(engine: Engine) -> Image:
    start = time.monotonic()
    done = subprocess.run(
        ["bash", "scripts/image.sh"], cwd=ROOT, env={**os.environ, **engine.env}, capture_output=True, text=True,
        timeout=BUILD_TIMEOUT_S, check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"scripts/image.sh failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return Image(engine.env["IMAGE_TAG"], time.monotonic() - start, done.stdout)


@dataclass
class Served:
    name: str
    run_dir: Path
    inference: int
    management: int
    metrics: int
    grpc_inference: int
    grpc_management: int
    serve_output: str
    ready_s: float

    def keys(self) -> Keys:
        return read_keys(self.run_dir / "key_file.json")

    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def serve_container(engine: Engine, run_dir: Path) -> Iterator[Served]:
    """A container of the image started by scripts/image-serve.sh (waits until healthy) as a fresh
    `ts-toolkit-test-<hex>`, on five free loopback ports, its run dir `run_dir`; removed (`rm -f`, by its own
    name) on exit, whether it is still running or was stopped."""
    ports = free_ports()
    name = f"ts-toolkit-test-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ, **engine.env, "CONTAINER_NAME": name, "IMAGE_RUN_DIR": str(run_dir),
        "HOST_INFERENCE_PORT": str(ports.inference), "HOST_MANAGEMENT_PORT": str(ports.management),
        "HOST_METRICS_PORT": str(ports.metrics), "HOST_GRPC_INFERENCE_PORT": str(ports.grpc_inference),
        "HOST_GRPC_MANAGEMENT_PORT": str(ports.grpc_management), "READY_TIMEOUT_S": str(READY_TIMEOUT_S),
        "DRAIN_DEADLINE_S": "20",
    }
    start = time.monotonic()
    try:
        done = subprocess.run(
            ["bash", "scripts/image-serve.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
            timeout=READY_TIMEOUT_S + 60, check=False,
        )
        ready_s = time.monotonic() - start
        if done.returncode != 0:
            logs = engine.run("logs", "--tail", "60", name, check=False)
            pytest.fail(
                f"image-serve.sh failed ({done.returncode}):\n{done.stdout}\n{done.stderr}\n{logs.stdout}{logs.stderr}"
            )
        yield Served(name, run_dir, ports.inference, ports.management, ports.metrics, ports.grpc_inference,
                     ports.grpc_management, done.stdout, ready_s)
    finally:
        engine.run("rm", "-f", "-t", "5", name, check=False, timeout=120)


@pytest.fixture(scope="session")
def served(engine: Engine, image: Image, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The session's container (of `image`: requested so that the image is built first), shared by the tests
    that do not stop it."""
    with serve_container(engine, tmp_path_factory.mktemp("image_run")) as served:
        yield served
