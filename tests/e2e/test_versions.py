"""Two versions of the real mnist model side by side: predict by version, set-default, unregister."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.conftest import BUILD, ROOT, STORE, require_built
from tests.e2e.conftest import CONFIG, serving
from toolkit.client.rest import InferenceClient
from toolkit.errors import ServerError
from toolkit.server.local import LocalServer

pytestmark = pytest.mark.e2e
SAMPLE = BUILD / "mnist" / "samples" / "3.png"


@pytest.fixture(scope="module")
def versioned(tmp_path_factory) -> Iterator[LocalServer]:
    """A server with mnist 1.0 loaded, and mnist 2.0 (answering top-3 instead of all probabilities) in its
    store, built by the real archive tool from a copy of config/models/mnist.yaml."""
    store = tmp_path_factory.mktemp("store")
    shutil.copy2(require_built(STORE / "mnist.mar", "make archive"), store / "mnist.mar")
    config = tmp_path_factory.mktemp("config") / "mnist.yaml"
    config.write_text((ROOT / "config" / "models" / "mnist.yaml").read_text().replace("top_k: 0", "top_k: 3"))
    built = subprocess.run([sys.executable, "-m", "toolkit.archive", "--config", str(config), "--version", "2.0",
                            "--store", str(store)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    assert (store / "mnist_v2.0.mar").is_file()
    server = LocalServer(CONFIG, tmp_path_factory.mktemp("run"), store, ["mnist.mar"])
    with serving(server):
        yield server


def predict(client: InferenceClient, version: str | None = None) -> dict:
    status, answer = client.predict("mnist", SAMPLE.read_bytes(), "image/png", version=version)
    assert status == 200
    return answer


def test_register_predict_by_version_set_default_unregister(versioned: LocalServer):
    with versioned.management_client() as manage, versioned.inference_client() as infer:
        manage.register("mnist_v2.0.mar", initial_workers=1)
        assert sorted(v["modelVersion"] for v in manage.versions("mnist")) == ["1.0", "2.0"]

        v1, v2 = predict(infer, "1.0"), predict(infer, "2.0")
        assert "probabilities" in v1 and "top_k" in v2 and v1["predicted_label"] == v2["predicted_label"] == 3
        assert "probabilities" in predict(infer), "1.0, registered first, is the default"

        with pytest.raises(ServerError) as refused:
            manage.unregister("mnist", "1.0")
        assert refused.value.status == 403, "the default version cannot be removed while another exists"

        manage.set_default("mnist", "2.0")
        assert "top_k" in predict(infer), "the plain URL now reaches 2.0"
        manage.unregister("mnist", "1.0")
        assert [v["modelVersion"] for v in manage.versions("mnist")] == ["2.0"]
        with pytest.raises(ServerError) as gone:
            infer.predict("mnist", SAMPLE.read_bytes(), "image/png", version="1.0")
        assert gone.value.status == 404 and "1.0" in gone.value.message


def test_registering_the_same_version_twice_is_409(versioned: LocalServer):
    with versioned.management_client() as manage:
        if "2.0" not in {v["modelVersion"] for v in manage.versions("mnist")}:
            manage.register("mnist_v2.0.mar", initial_workers=1)
        with pytest.raises(ServerError) as duplicate:
            manage.register("mnist_v2.0.mar", initial_workers=1)
        assert duplicate.value.status == 409 and "2.0" in duplicate.value.message


def test_unknown_version_is_404(versioned: LocalServer):
    with versioned.inference_client() as infer, pytest.raises(ServerError) as missing:
        infer.predict("mnist", SAMPLE.read_bytes(), "image/png", version="9.9")
    assert missing.value.status == 404


