"""The image itself: multi-stage leftovers absent, non-root, HEALTHCHECK, size, compose file."""

from __future__ import annotations

import json
import subprocess

from tests.container.conftest import Engine, Image
from toolkit.paths import ROOT

SIZE_LIMIT = 1_170_000_000  # the image TorchServe's approach gave here; ours must be smaller


def test_image_is_smaller_than_the_reference(engine: Engine, image: Image) -> None:
    size = int(engine.run("image", "inspect", "--format", "{{.Size}}", image.tag).stdout.strip())
    print(f"image {image.tag}: {size / 1e6:.0f} MB; scripts/image.sh took {image.build_s:.1f} s")
    assert size < SIZE_LIMIT


def test_image_config_non_root_healthcheck_init(engine: Engine, image: Image) -> None:
    config = json.loads(engine.run("image", "inspect", "--format", "{{json .Config}}", image.tag).stdout)
    assert config["User"].split(":")[0] not in ("", "0", "root")
    assert config["Entrypoint"][0] == "/usr/bin/tini"
    health = json.loads(engine.run("image", "inspect", "--format", "{{json .Config.Healthcheck}}", image.tag).stdout)
    assert health.get("Test", [])[1:] == ["python", "-m", "toolkit.server.container", "health"]


def test_final_stage_has_no_compiler_pip_or_caches(engine: Engine, image: Image) -> None:
    script = (
        "for p in gcc cc g++ make pip pip3 javac; do command -v $p && echo FOUND $p; done; "
        "ls -d /root/.cache /home/ts/.cache /app/.venv/bin/pip* 2>/dev/null | sed 's/^/FOUND /'; id -u"
    )
    done = engine.run("run", "--rm", "--entrypoint", "sh", image.tag, "-c", script)
    assert "FOUND" not in done.stdout, done.stdout
    assert done.stdout.split()[-1] != "0"


def test_compose_file_passes_the_config_check() -> None:
    done = subprocess.run(["bash", "scripts/compose_check.sh"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr
