"""Small synchronous clients for TorchServe's REST inference and management APIs (token auth on).

Every non-2xx answer raises `toolkit.errors.ServerError` carrying TorchServe's (or our handler's)
status, error type and message; a server that cannot be reached raises `ServerUnreachableError`. A prediction
the server had no room for (full model queue: `ServerBusyError`) is retried with capped exponential backoff and
jitter (`retry`, a `toolkit.client.retry.RetryPolicy`; `RetryPolicy.off()` turns it off).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import requests

from toolkit.client.auth import auth_header
from toolkit.client.error_body import busy_or_same, error_from_body
from toolkit.client.management import Registration
from toolkit.client.retry import RetryPolicy
from toolkit.errors import ServerError, ServerUnreachableError


def _segment(value: str) -> str:
    """One URL path segment, percent-encoded (model names and versions are user input)."""
    return quote(str(value), safe="")


def decode_body(body: bytes) -> Any:
    """The parsed JSON of a body, or the raw bytes when it is not JSON."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body


class _Client:
    """A requests session bound to one base URL and one bearer key."""

    def __init__(self, base_url: str, key: str, timeout_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._session = requests.Session()
        self._session.headers.update(auth_header(key))

    def close(self) -> None:
        """Close the pooled connections."""
        self._session.close()

    def __enter__(self) -> _Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send one request; raise ServerUnreachableError on no answer and ServerError on non-2xx."""
        url = f"{self.base_url}{path}"
        try:
            resp = self._session.request(method, url, timeout=self.timeout_s, **kwargs)
        except requests.ConnectionError as exc:
            raise ServerUnreachableError(f"cannot reach TorchServe at {url}: {_reason(exc)}") from exc
        except requests.Timeout as exc:
            raise ServerUnreachableError(f"no answer from {url} within {self.timeout_s:g} s") from exc
        if not 200 <= resp.status_code < 300:
            # Some frontend refusals (413 over max_request_size) come with an empty body.
            raise error_from_body(resp.status_code, resp.content or (resp.reason or "").encode())
        return resp


def _reason(exc: requests.RequestException) -> str:
    text = str(exc)
    return "connection refused" if "refused" in text.lower() else text


class InferenceClient(_Client):
    """Client of the inference API (`inference_address`), authorized with the inference key. `retry` says how
    a prediction refused for a full queue is retried (default: 5 tries within 10 s)."""

    def __init__(self, base_url: str, key: str, timeout_s: float = 60.0, retry: RetryPolicy | None = None) -> None:
        super().__init__(base_url, key, timeout_s)
        self.retry = retry or RetryPolicy()

    def ping(self) -> str:
        """The health status string of /ping ("Healthy"); a non-2xx answer (500 Unhealthy) raises."""
        return str(self._call("GET", "/ping").json()["status"])

    def predict(self, model: str, body: bytes, content_type: str, version: str | None = None) -> tuple[int, Any]:
        """POST `body` to /predictions/<model>[/<version>]; the 2xx status and the parsed JSON answer
        (raw bytes when the answer is not JSON). Raises ServerError on non-2xx, ServerBusyError once `retry`
        gives up on a full queue."""
        path = f"/predictions/{_segment(model)}"
        if version is not None:
            path += f"/{_segment(version)}"

        def once() -> requests.Response:
            try:
                return self._call("POST", path, data=body, headers={"Content-Type": content_type})
            except ServerError as exc:
                raise busy_or_same(exc) from None

        resp = self.retry.call(once)
        return resp.status_code, decode_body(resp.content)


class ManagementClient(_Client):
    """Client of the management API (`management_address`), authorized with the management key.

    Default timeout is long because a synchronous registration waits for the workers to load the model.
    """

    def __init__(self, base_url: str, key: str, timeout_s: float = 300.0) -> None:
        super().__init__(base_url, key, timeout_s)

    def register(self, url: str | Registration, **options: Any) -> dict:
        """Register an archive of the model store by file name (`mnist.mar`); `options` are the fields of
        `Registration`. Unset options fall back to the archive's model config, then the server defaults.
        Returns TorchServe's `{"status": ...}`."""
        reg = Registration.of(url, **options)
        params: dict[str, Any] = {"url": reg.url, "synchronous": str(reg.synchronous).lower()}
        optional = {
            "model_name": reg.model_name,
            "batch_size": reg.batch_size,
            "max_batch_delay": reg.max_batch_delay_ms,
            "initial_workers": reg.initial_workers,
            "response_timeout": reg.response_timeout_s,
        }
        params.update({k: v for k, v in optional.items() if v is not None})
        return self._call("POST", "/models", params=params).json()

    def unregister(self, name: str, version: str | None = None) -> dict:
        """Unregister a model (its default version when `version` is None). 403 for the default version
        while other versions exist."""
        return self._call("DELETE", self._model_path(name, version)).json()

    def scale(
        self,
        name: str,
        min_workers: int,
        max_workers: int,
        version: str | None = None,
        synchronous: bool = True,
    ) -> dict:
        """Set a model version's worker range; synchronous waits until the workers are up (200), else 202."""
        params = {"min_worker": min_workers, "max_worker": max_workers, "synchronous": str(synchronous).lower()}
        return self._call("PUT", self._model_path(name, version), params=params).json()

    def describe(self, name: str, version: str | None = None) -> list[dict]:
        """TorchServe's description of one model version (default when None): a one-element list of
        dicts with modelVersion, minWorkers, maxWorkers, batchSize, workers[] (id, pid, status) ..."""
        return self._call("GET", self._model_path(name, version)).json()

    def versions(self, name: str) -> list[dict]:
        """The descriptions of every registered version of a model (`/models/<name>/all`)."""
        return self.describe(name, "all")

    def set_default(self, name: str, version: str) -> dict:
        """Make `version` the version served by /predictions/<name>."""
        return self._call("PUT", f"{self._model_path(name, version)}/set-default").json()

    def models(self) -> list[dict]:
        """Every registered model as `{"modelName", "modelUrl"}` (default version's archive), all pages."""
        models: list[dict] = []
        params: dict[str, Any] = {"limit": 100}
        while True:
            page = self._call("GET", "/models", params=params).json()
            models.extend(page.get("models", []))
            token = page.get("nextPageToken")
            if not token:
                return models
            params["next_page_token"] = token

    @staticmethod
    def _model_path(name: str, version: str | None) -> str:
        path = f"/models/{_segment(name)}"
        return path if version is None else f"{path}/{_segment(version)}"

