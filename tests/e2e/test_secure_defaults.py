"""Secure defaults of the project config on the session server, beyond tests/e2e/test_auth_and_management.py
(which covers /ping, /predictions/<model>, GET /models and POST /models with missing, wrong, swapped and
prefix-less tokens, plus the basic allowed_urls refusals) and test_server_lifecycle.py (loopback listeners):

- every other REST endpoint refuses missing and wrong tokens, the swapped key and the key file's third
  ("API") key, and a refused mutation (scale, unregister, set-default, register) changes nothing;
- the key-rotation endpoint /token takes only the API key (never called with it here: that would rotate
  the session server's keys);
- gRPC management mutations refuse bad tokens and change nothing;
- more ways of naming an archive outside the model store are refused;
- the only answers given without a token are the API description and /metrics;
- worker sockets are not writable by other users and the key file is private (0600).
"""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest
import requests

from tests.paths import STORE
from toolkit.client.auth import Keys, auth_header
from toolkit.client.grpc import GrpcManagementClient
from toolkit.client.rest import ManagementClient
from toolkit.errors import ServerError
from toolkit.server.local import LocalServer
from toolkit.torchserve import TOKEN_FAILED

TOKEN_API_FAILED = "Token Authentication failed"
MODEL = "mnist"


def api_key(server: LocalServer) -> str:
    """The key file's third key, the one /token accepts."""
    return json.loads(server.key_file.read_text())["API"]["key"]


def refused_headers(server: LocalServer, right: str, other: str) -> dict[str, dict[str, str]]:
    """Authorization headers that must be refused where `right` is the key to use, `other` the other API's."""
    return {
        "missing": {},
        "wrong": auth_header("not-a-key"),
        "other API's key": auth_header(other),
        "API key": auth_header(api_key(server)),
        "lower-case scheme": {"Authorization": f"bearer {right}"},
    }


def snapshot(management: ManagementClient) -> dict[str, list[tuple]]:
    """Every model version with its worker range, default flag and worker pids."""
    state = {}
    for model in management.models():
        name = model["modelName"]
        default = management.describe(name)[0]["modelVersion"]
        state[name] = [
            (d["modelVersion"], d["modelVersion"] == default, d["minWorkers"], d["maxWorkers"],
             sorted(w["pid"] for w in d["workers"]))
            for d in management.versions(name)
        ]
    return state


def assert_token_refused(resp: requests.Response, case: str, text: str = TOKEN_FAILED) -> None:
    assert resp.status_code == 400, (case, resp.status_code, resp.text[:200])
    body = resp.json()
    assert (body["code"], body["type"]) == (400, "InvalidKeyException"), (case, body)
    assert body["message"].startswith(text), (case, body)


INFERENCE_ENDPOINTS = [
    ("POST", f"/predictions/{MODEL}/1.0"),
    ("POST", f"/explanations/{MODEL}"),
    ("POST", f"/v1/models/{MODEL}:predict"),
    ("POST", f"/v2/models/{MODEL}/infer"),
    ("GET", "/models"),
]
MANAGEMENT_ENDPOINTS = [
    ("GET", f"/models/{MODEL}"),
    ("GET", f"/models/{MODEL}/all"),
    ("PUT", f"/models/{MODEL}?min_worker=0&max_worker=0&synchronous=true"),
    ("DELETE", f"/models/{MODEL}/1.0"),
    ("PUT", f"/models/{MODEL}/1.0/set-default"),
    ("POST", f"/models?url={MODEL}.mar&model_name=sneaky&initial_workers=1&synchronous=true"),
]


def test_every_inference_endpoint_refuses_bad_tokens(server: LocalServer, keys: Keys) -> None:
    for method, path in INFERENCE_ENDPOINTS:
        for case, headers in refused_headers(server, keys.inference, keys.management).items():
            resp = requests.request(method, f"{server.urls.inference}{path}", data=b"{}", headers=headers, timeout=30)
            assert_token_refused(resp, f"{method} {path} with {case}")


def test_refused_management_calls_change_nothing(server: LocalServer, keys: Keys, management: ManagementClient) -> None:
    before = snapshot(management)
    for method, path in MANAGEMENT_ENDPOINTS:
        for case, headers in refused_headers(server, keys.management, keys.inference).items():
            resp = requests.request(method, f"{server.urls.management}{path}", headers=headers, timeout=60)
            assert_token_refused(resp, f"{method} {path} with {case}")
    assert snapshot(management) == before


def test_token_rotation_takes_only_the_api_key(server: LocalServer, keys: Keys) -> None:
    """POST /token?type=inference|management (management API) regenerates a key; only the key file's "API"
    key may call it, not the inference or the management key."""
    headers = {"missing": {}, "wrong": auth_header("not-a-key"), "inference key": auth_header(keys.inference),
               "management key": auth_header(keys.management)}
    for kind in ("inference", "management"):
        for case, header in headers.items():
            resp = requests.post(f"{server.urls.management}/token", params={"type": kind}, headers=header, timeout=30)
            assert_token_refused(resp, f"/token?type={kind} with {case}", TOKEN_API_FAILED)
    assert server.read_keys() == keys, "a refused rotation changed the keys"


@pytest.mark.parametrize("which", ["missing", "wrong", "inference key", "API key"])
def test_grpc_management_mutations_refuse_bad_tokens(
    server: LocalServer, keys: Keys, management: ManagementClient, which: str
) -> None:
    key = {"missing": None, "wrong": "not-a-key", "inference key": keys.inference, "API key": api_key(server)}[which]
    before = snapshot(management)
    calls = {
        "register": lambda c: c.register(f"{MODEL}.mar", model_name="sneaky", initial_workers=1),
        "scale": lambda c: c.scale(MODEL, 3, 3),
        "set_default": lambda c: c.set_default(MODEL, "1.0"),
        "unregister": lambda c: c.unregister(MODEL, "1.0"),
        "describe": lambda c: c.describe(MODEL),
    }
    with GrpcManagementClient(server.urls.grpc_management, key, 60) as client:
        for name, call in calls.items():
            with pytest.raises(ServerError) as info:
                call(client)
            assert (info.value.status, info.value.kind) == (403, "PERMISSION_DENIED"), (name, str(info.value))
            assert info.value.message.startswith(TOKEN_FAILED), (name, info.value.message)
    assert snapshot(management) == before


def test_archives_outside_the_store_are_refused(
    server: LocalServer, management: ManagementClient, tmp_path: Path
) -> None:
    """allowed_urls=(?!) and TorchServe's own path rules, for spellings the basic test does not try. The
    archive named below really exists, but only outside the model store."""
    outside = tmp_path / "outside_only.mar"
    shutil.copy2(STORE / f"{MODEL}.mar", outside)
    assert not (server.model_store / outside.name).exists()
    cases = {
        "HTTPS://example.com/x.mar": "does not match any allowed URL",
        "Http://127.0.0.1:1/x.mar": "does not match any allowed URL",
        "ftp://127.0.0.1/x.mar": "Model not found at",
        "s3://bucket/x.mar": "Model not found at",
        f"file:{outside}": "Model not found at",
        str(outside): "Model not found at",
        f"%2e%2e/%2e%2e{outside}": "Model not found at",
        f"sub/../{outside.name}": "Relative path is not allowed",
        f"..\\{outside.name}": "Relative path is not allowed",
    }
    before = snapshot(management)
    for url, text in cases.items():
        with pytest.raises(ServerError) as info:
            management.register(url, model_name="sneaky")
        assert (info.value.status, info.value.kind) == (404, "ModelNotFoundException"), (url, str(info.value))
        assert text in info.value.message, (url, info.value.message)
    assert snapshot(management) == before


def test_only_the_api_description_and_metrics_answer_without_a_token(server: LocalServer, keys: Keys) -> None:
    """OPTIONS / and GET /api-description (static OpenAPI text) on both REST APIs, and /metrics, are the whole
    unauthenticated surface; the description names no model and carries no key."""
    for base in (server.urls.inference, server.urls.management):
        for method, path in (("OPTIONS", "/"), ("GET", "/api-description")):
            resp = requests.request(method, f"{base}{path}", timeout=30)
            assert resp.status_code == 200 and resp.json()["openapi"].startswith("3."), (base, path)
            assert MODEL not in resp.text and keys.inference not in resp.text and keys.management not in resp.text
        assert_token_refused(requests.get(f"{base}/models/{MODEL}", timeout=30), f"{base} describe")
    assert requests.get(f"{server.urls.metrics}/metrics", timeout=30).status_code == 200


def test_worker_sockets_and_key_file_are_private(server: LocalServer) -> None:
    """Workers take commands on Unix sockets in the run dir without any token: no other user may connect
    (connecting needs write permission on the socket file). The key file is 0600."""
    sockets = [p for p in server.run_dir.glob(".ts.sock.*") if stat.S_ISSOCK(p.stat().st_mode)]
    assert sockets, f"no worker sockets in {server.run_dir}"
    for path in sockets:
        assert not path.stat().st_mode & stat.S_IWOTH, f"{path} is writable by other users"
    assert stat.S_IMODE(server.key_file.stat().st_mode) == 0o600
