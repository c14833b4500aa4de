"""A second version of a real model on the session server: mnist 2.0, built by the real archive tool from a
copy of config/models/mnist.yaml with `top_k: 3`, answers top-3 while 1.0 keeps answering all probabilities.

Version semantics themselves (409 duplicate, 403 removing the default, set-default, unregister, 404 for a
removed or unknown version) are pinned on throwaway echo archives in test_auth_and_management.py and
test_grpc.py; this module adds the one fact that needs a real archive, and removes 2.0 again in a `finally`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.e2e._helpers import one_worker_config
from tests.paths import BUILD, ROOT, require_built
from toolkit.client.rest import InferenceClient, ManagementClient
from toolkit.errors import ServerError
from toolkit.server.local import LocalServer

SAMPLE = BUILD / "mnist" / "samples" / "3.png"


def build_v2(work: Path, store: Path) -> str:
    """mnist 2.0 with top_k 3 (1 worker, like the session's other archives), archived by `python -m
    toolkit.archive --version 2.0` into `store`; returns its file name."""
    shipped = (ROOT / "config" / "models" / "mnist.yaml").read_text()
    assert "top_k: 0" in shipped
    config = work / "mnist.yaml"
    config.write_text(one_worker_config(shipped.replace("top_k: 0", "top_k: 3")))
    assert yaml.safe_load(config.read_text())["handler"]["top_k"] == 3
    built = subprocess.run([sys.executable, "-m", "toolkit.archive", "--config", str(config), "--version", "2.0",
                            "--store", str(store)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    assert (store / "mnist_v2.0.mar").is_file()
    return "mnist_v2.0.mar"


def predict(client: InferenceClient, version: str | None = None) -> dict:
    status, answer = client.predict("mnist", SAMPLE.read_bytes(), "image/png", version=version)
    assert status == 200
    return answer


def test_a_real_second_version_answers_with_its_own_config(
    server: LocalServer, management: ManagementClient, inference: InferenceClient, tmp_path: Path
) -> None:
    require_built(SAMPLE, "make models")
    archive = build_v2(tmp_path, server.model_store)
    try:
        management.register(archive, initial_workers=1)
        assert sorted(v["modelVersion"] for v in management.versions("mnist")) == ["1.0", "2.0"]

        v1, v2 = predict(inference, "1.0"), predict(inference, "2.0")
        assert "probabilities" in v1 and "top_k" in v2 and v1["predicted_label"] == v2["predicted_label"] == 3
        assert len(v1["probabilities"]) == 10 and len(v2["top_k"]) == 3
        assert "probabilities" in predict(inference), "1.0, registered first, is the default"

        management.set_default("mnist", "2.0")
        assert "top_k" in predict(inference), "the plain URL now reaches 2.0"
    finally:
        management.set_default("mnist", "1.0")
        management.unregister("mnist", "2.0")
        (server.model_store / archive).unlink()
    assert [v["modelVersion"] for v in management.versions("mnist")] == ["1.0"]
    assert "probabilities" in predict(inference)
    with pytest.raises(ServerError) as gone:
        inference.predict("mnist", SAMPLE.read_bytes(), "image/png", version="2.0")
    assert gone.value.status == 404 and "2.0" in gone.value.message
