"""Token authorization and management-API errors of a real TorchServe 0.12 (the session server), through
our REST clients and the `manage` / `predict` command lines.

What TorchServe 0.12 really answers (checked here): a missing or wrong token is 400 InvalidKeyException on
both APIs, /ping included; the two keys are not interchangeable; /metrics asks for no token.
Version-management errors (409 duplicate version, 403 removing the default version, 500 load failure) run
on the shared echo server (conftest.py) with throwaway echo archives, registered under names of this module
only and unregistered in a `finally`, so neither server's models change.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
import requests

from toolkit.cli import manage, predict
from toolkit.client.auth import Keys, auth_header
from toolkit.client.rest import InferenceClient, ManagementClient
from toolkit.errors import ServerError
from toolkit.server.local import LocalServer
from toolkit.torchserve import INVALID_KEY, TOKEN_FAILED


def assert_refused(resp: requests.Response, case: str) -> None:
    assert resp.status_code == 400, case
    assert resp.json() == {"code": 400, "type": "InvalidKeyException", "message": TOKEN_FAILED}, case
    assert resp.json() == json.loads(INVALID_KEY.body()), "toolkit.torchserve's table is TorchServe's answer"


def bad_headers(keys: Keys, right: str) -> dict[str, dict[str, str]]:
    """Header sets that must be refused where `right` is the key to use."""
    other = keys.management if right == keys.inference else keys.inference
    return {
        "missing": {},
        "wrong": auth_header("not-a-key"),
        "other API's key": auth_header(other),
        "no Bearer prefix": {"Authorization": right},
    }


def test_inference_api_refuses_bad_tokens(server: LocalServer, keys: Keys, model_names: list[str]) -> None:
    base = server.urls.inference
    for case, headers in bad_headers(keys, keys.inference).items():
        assert_refused(requests.get(f"{base}/ping", headers=headers, timeout=30), case)
        predict_url = f"{base}/predictions/{model_names[0]}"
        assert_refused(requests.post(predict_url, data=b"{}", headers=headers, timeout=30), case)


def test_management_api_refuses_bad_tokens(server: LocalServer, keys: Keys) -> None:
    base = server.urls.management
    for case, headers in bad_headers(keys, keys.management).items():
        assert_refused(requests.get(f"{base}/models", headers=headers, timeout=30), case)
        register = f"{base}/models?url=nothing.mar"
        assert_refused(requests.post(register, headers=headers, timeout=30), case)


def test_right_tokens_are_accepted(
    inference: InferenceClient, management: ManagementClient, model_names: list[str]
) -> None:
    assert inference.ping() == "Healthy"
    assert model_names == sorted(m["modelName"] for m in management.models())
    for name in model_names:
        (desc,) = management.describe(name)
        assert desc["modelName"] == name
        assert any(w["status"] == "READY" for w in desc["workers"])


@pytest.mark.asyncio
async def test_concurrent_requests_are_authorized_one_by_one(server: LocalServer, keys: Keys) -> None:
    """Interleaved right and wrong tokens in flight at once: each request gets its own verdict."""
    url = f"{server.urls.inference}/ping"
    tokens = [keys.inference if i % 2 == 0 else f"wrong-{i}" for i in range(16)]
    async with aiohttp.ClientSession() as session:

        async def ping(token: str) -> int:
            async with session.get(url, headers=auth_header(token)) as resp:
                await resp.read()
                return resp.status

        statuses = await asyncio.gather(*(ping(t) for t in tokens))
    assert statuses == [200 if t == keys.inference else 400 for t in tokens]


def test_metrics_endpoint_needs_no_token(server: LocalServer) -> None:
    resp = requests.get(f"{server.urls.metrics}/metrics", timeout=30)
    assert resp.status_code == 200
    assert "# TYPE" in resp.text  # Prometheus text format (metrics_mode=prometheus)


def expect_error(call: object, status: int, kind: str, message: str = "") -> ServerError:
    assert callable(call)
    with pytest.raises(ServerError) as info:
        call()
    assert (info.value.status, info.value.kind) == (status, kind), str(info.value)
    assert message in info.value.message
    return info.value


def test_unknown_model_is_404(management: ManagementClient, inference: InferenceClient) -> None:
    expect_error(lambda: management.describe("no-such-model"), 404, "ModelNotFoundException", "no-such-model")
    expect_error(lambda: management.versions("no-such-model"), 404, "ModelNotFoundException")
    expect_error(lambda: management.scale("no-such-model", 1, 1), 404, "ModelNotFoundException")
    expect_error(lambda: management.unregister("no-such-model"), 404, "ModelNotFoundException")
    expect_error(lambda: inference.predict("no-such-model", b"{}", "application/json"), 404, "ModelNotFoundException")


def test_unknown_version_is_404(
    management: ManagementClient, inference: InferenceClient, model_names: list[str]
) -> None:
    name = model_names[0]
    kind = "ModelVersionNotFoundException"
    expect_error(lambda: management.describe(name, "99.9"), 404, kind, "99.9")
    expect_error(lambda: management.set_default(name, "99.9"), 404, kind, "99.9")
    expect_error(lambda: management.unregister(name, "99.9"), 404, kind, "99.9")
    expect_error(lambda: inference.predict(name, b"{}", "application/json", version="99.9"), 404, kind)


def test_archives_only_from_the_model_store(management: ManagementClient, server: LocalServer) -> None:
    """allowed_urls matches no URL: remote and file URLs are refused, and so is any '..'."""
    for url in ("https://example.com/mnist.mar", "http://127.0.0.1:1/x.mar", f"file://{server.model_store}/x.mar"):
        expect_error(
            lambda u=url: management.register(u), 404, "ModelNotFoundException", "does not match any allowed URL"
        )
    expect_error(lambda: management.register("../model_store/x.mar"), 404, "ModelNotFoundException", "Relative path")
    expect_error(
        lambda: management.register("no-such-archive.mar"), 404, "ModelNotFoundException", "Model not found at"
    )


def test_registering_a_loaded_archive_again_is_409(management: ManagementClient) -> None:
    loaded = management.models()[0]
    error = expect_error(lambda: management.register(loaded["modelUrl"]), 409, "ConflictStatusException")
    assert f"for model {loaded['modelName']}" in error.message


def test_wrong_method_is_405(server: LocalServer, keys: Keys) -> None:
    resp = requests.put(f"{server.urls.management}/models", headers=auth_header(keys.management), timeout=30)
    assert resp.status_code == 405
    assert resp.json()["type"] == "MethodNotAllowedException"


def test_manage_cli_against_the_server(
    server: LocalServer, model_names: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    conn = ["--management-url", server.urls.management, "--key-file", str(server.key_file)]
    assert manage.main(["list", "--json", *conn]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert sorted(m["modelName"] for m in listed) == model_names

    assert manage.main(["describe", "no-such-model", *conn]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "error: HTTP 404 ModelNotFoundException: Model not found: no-such-model\n"

    assert manage.main(["versions", model_names[0], "--json", *conn]) == 0
    assert {d["modelName"] for d in json.loads(capsys.readouterr().out)} == {model_names[0]}


def test_predict_cli_errors_against_the_server(
    server: LocalServer, model_names: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    conn = ["--url", server.urls.inference, "--key-file", str(server.key_file)]
    assert predict.main([model_names[0], "{}", "--version", "99.9", *conn]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: HTTP 404 ModelVersionNotFoundException: ")
    assert err.count("\n") == 1


# --- version management on a server of throwaway archives -------------------------------------------------


VERSIONED = "auth_echo"  # echo_1.0.mar and echo_2.0.mar registered under this name by the lifecycle test


def unregister_all(mgmt: ManagementClient, name: str) -> None:
    """Remove every version of `name` (the default last, as TorchServe requires); nothing if not registered."""
    if not any(m["modelName"] == name for m in mgmt.models()):
        return
    default = mgmt.describe(name)[0]["modelVersion"]
    for version in sorted({d["modelVersion"] for d in mgmt.versions(name)} - {default}):
        mgmt.unregister(name, version)
    mgmt.unregister(name, default)


def test_version_lifecycle_and_its_errors(echo_server: LocalServer) -> None:
    name = VERSIONED
    with echo_server.management_client() as mgmt, echo_server.inference_client() as inf:
        try:
            assert "1.0" in mgmt.register("echo_1.0.mar", model_name=name)["status"]
            assert "2.0" in mgmt.register("echo_2.0.mar", model_name=name)["status"]
            assert [d["modelVersion"] for d in mgmt.versions(name)] == ["1.0", "2.0"]
            expect_error(
                lambda: mgmt.register("echo_2.0.mar", model_name=name),
                409,
                "ConflictStatusException",
                f"Model version 2.0 is already registered for model {name}",
            )
            expect_error(
                lambda: mgmt.unregister(name, "1.0"),
                403,
                "InvalidModelVersionException",
                f"Cannot remove default version for model {name}",
            )
            assert inf.predict(name, b"x", "text/plain")[1]["version"] == "1.0"
            mgmt.set_default(name, "2.0")
            assert inf.predict(name, b"x", "text/plain")[1]["version"] == "2.0"
            assert inf.predict(name, b"x", "text/plain", version="1.0")[1]["version"] == "1.0"
            mgmt.unregister(name, "1.0")
            assert [d["modelVersion"] for d in mgmt.versions(name)] == ["2.0"]
            removed = expect_error(lambda: inf.predict(name, b"x", "text/plain", version="1.0"), 404,
                                   "ModelVersionNotFoundException")
            assert "1.0" in removed.message
        finally:
            unregister_all(mgmt, name)
        expect_error(lambda: mgmt.describe(name), 404, "ModelNotFoundException")
        assert inf.predict("echo", b"x", "text/plain")[1] == {"echo": "x", "version": "1.0"}, "echo is untouched"


def test_load_failure_is_500_and_never_leaves_a_model_with_workers(
    echo_server: LocalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """TorchServe 0.12 either keeps the failed model registered with no worker or drops it (seen both ways,
    depending on when its worker thread gives up); the CLI hint says "may keep". Both outcomes are checked."""
    conn = ["--management-url", echo_server.urls.management, "--key-file", str(echo_server.key_file)]
    try:
        assert manage.main(["register", "broken_1.0.mar", *conn]) == 1
        err = capsys.readouterr().err
        assert err.startswith(
            "error: HTTP 500 InternalServerException: Failed to start workers for model broken version: 1.0: "
            "RuntimeError: this model cannot load (from "
        )
        assert "check `manage list` and unregister it" in err
        with echo_server.management_client() as mgmt:
            if any(m["modelName"] == "broken" for m in mgmt.models()):
                (desc,) = mgmt.describe("broken")
                assert (desc["minWorkers"], desc["workers"]) == (0, [])  # registered, but no worker
    finally:
        with echo_server.management_client() as mgmt:
            unregister_all(mgmt, "broken")
    with echo_server.management_client() as mgmt:
        expect_error(lambda: mgmt.describe("broken"), 404, "ModelNotFoundException")
