"""gRPC client for TorchServe 0.12: inference (default port 7070) and management (default port 7071).

Stubs come from `toolkit.client.grpc_gen`, generated at install time by `scripts/gen_grpc.py` from `proto/`.

Error contract (same `ServerError` as the REST client):
- A handler's per-request error travels as a successful call whose prediction bytes are the JSON error
  `{"code": >=400, "type", "message"}` (TorchServe ignores per-request status on gRPC); it is raised as
  `ServerError(code, message, type)`.
- A failed call is mapped from its gRPC status code back to an HTTP status (`http_status_for`). TorchServe
  appends the Java exception class to the details (`"Model not found: x\\n...ModelNotFoundException"`);
  that class becomes `ServerError.kind` and, for calls TorchServe fails as INTERNAL although REST would
  answer 4xx (unknown model or version on Predictions, missing model name), it also fixes the status.
- Without or with a wrong token TorchServe 0.12 answers PERMISSION_DENIED -> 403 (REST answers 400 InvalidKeyException).

Management answers have the REST API's shapes (`toolkit.client.management.ManagementApi`): TorchServe's gRPC
`msg` is a plain sentence for register/scale/set-default/unregister, returned as `{"status": msg}`, and JSON
for describe/list, returned parsed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import grpc
from google.protobuf import empty_pb2

from toolkit.client.error_body import parse_error_body
from toolkit.errors import ServerError, UnsupportedRequestError

try:
    from toolkit.client.grpc_gen import inference_pb2, inference_pb2_grpc, management_pb2, management_pb2_grpc
except ImportError as exc:  # the package is generated at install time, never lazily
    raise ImportError(
        "toolkit.client.grpc_gen is missing or stale: run `.venv/bin/python scripts/gen_grpc.py` (install step)"
    ) from exc

# gRPC status -> HTTP status. Inverse of TorchServe's GRPCUtils.getGRPCStatusCode (409 -> ABORTED,
# 416 -> OUT_OF_RANGE, 499 -> CANCELLED, 501 -> UNIMPLEMENTED, 504 -> DEADLINE_EXCEEDED) plus the
# codes of our handlers' error mapping. RESOURCE_EXHAUSTED is resolved by `http_status_for`.
GRPC_TO_HTTP: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 416,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}

# TorchServe exception class -> the HTTP status its REST API gives it. Used when gRPC says INTERNAL/UNKNOWN.
EXCEPTION_TO_HTTP: dict[str, int] = {
    "BadRequestException": 400,
    "ModelNotFoundException": 404,
    "ModelVersionNotFoundException": 404,
    "ConflictStatusException": 409,
    "ServiceUnavailableException": 503,
}

_CODE_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}
# Last details line naming a Java exception: "org.x.FooException" or "FooException.()".
_EXCEPTION_LINE = re.compile(r"^(?:[\w$]+\.)*(\w+(?:Exception|Error))(?:\.\(\))?$")
_TOO_LARGE = re.compile(r"larger than|too large", re.IGNORECASE)


def http_status_for(code: grpc.StatusCode, details: str = "") -> int:
    """HTTP status for a gRPC status code; 500 for INTERNAL, UNKNOWN and anything unmapped.

    RESOURCE_EXHAUSTED means 413 when the details speak of a message size ("larger than", "too large",
    as gRPC's own max-message-size errors do), else 429.
    """
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED and _TOO_LARGE.search(details):
        return 413
    return GRPC_TO_HTTP.get(code, 500)


def split_details(details: str) -> tuple[str, str]:
    """(message, Java exception simple name or "") from TorchServe's "message\\nclass" details text."""
    head, _, last = details.strip().rpartition("\n")
    match = _EXCEPTION_LINE.match(last.strip())
    if match is None:
        return details.strip(), ""
    return head.strip(), match.group(1)


def error_from_status(code: grpc.StatusCode, details: str | None) -> ServerError:
    """ServerError for a failed call: HTTP status, message without the class line, kind = class or code name.

    Example: (INTERNAL, "Model not found: x\\norg...ModelNotFoundException") ->
    ServerError(404, "Model not found: x", "ModelNotFoundException").
    """
    message, exception = split_details(details or "")
    status = http_status_for(code, message)
    if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN) and exception in EXCEPTION_TO_HTTP:
        status = EXCEPTION_TO_HTTP[exception]
    return ServerError(status, message or f"gRPC {code.name} without details", exception or code.name)


def error_from_rpc(err: grpc.RpcError) -> ServerError:
    """ServerError for a `grpc.RpcError` raised by a stub call (which is also a `grpc.Call`)."""
    code = err.code() if isinstance(err, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = err.details() if isinstance(err, grpc.Call) else str(err)
    return error_from_status(code or grpc.StatusCode.UNKNOWN, details)


def check_prediction(response: inference_pb2.PredictionResponse) -> bytes:
    """The prediction bytes, or ServerError when they are an error body or the response carries a status."""
    if response.HasField("status") and response.status.code != 0:
        code = _CODE_BY_VALUE.get(response.status.code, grpc.StatusCode.UNKNOWN)
        raise error_from_status(code, response.status.message)
    error = parse_error_body(response.prediction)
    if error is not None:
        raise ServerError(int(error["code"]), str(error["message"]), str(error["type"]))
    return response.prediction


def _auth(key: str | None) -> tuple[tuple[str, str], ...]:
    """gRPC metadata carrying `authorization: Bearer <key>`; none without a key."""
    return (("authorization", f"Bearer {key}"),) if key else ()


def _parse_health(text: str) -> str:
    """Status word of TorchServe's health JSON `{"status": "Healthy"}`; the stripped text if not that."""
    try:
        obj = json.loads(text)
    except ValueError:
        return text.strip()
    return str(obj["status"]) if isinstance(obj, dict) and "status" in obj else text.strip()


class GrpcClient:
    """Blocking client of TorchServe's gRPC APIs; use as a context manager to close its channels.

    Addresses are "host:port" (e.g. "127.0.0.1:7070"); either may be None when that API is not used (its
    calls then raise ValueError). Keys are the "inference"/"management" keys of TorchServe's key_file.json,
    sent as `authorization: Bearer <key>`; None sends no token (servers run with token auth disabled).
    `timeout_s` is the deadline of every call, in seconds. Every failure is raised as
    `toolkit.errors.ServerError` (see the module docstring). Satisfies
    `toolkit.client.management.ManagementApi`.
    """

    def __init__(
        self,
        inference_address: str | None = None,
        management_address: str | None = None,
        inference_key: str | None = None,
        management_key: str | None = None,
        timeout_s: float = 30,
    ) -> None:
        self.timeout_s = timeout_s
        self._channels: list[grpc.Channel] = []
        self._inference = self._stub(inference_address, inference_pb2_grpc.InferenceAPIsServiceStub)
        self._inference_auth = _auth(inference_key)
        self._management = self._stub(management_address, management_pb2_grpc.ManagementAPIsServiceStub)
        self._management_auth = _auth(management_key)

    def _stub(self, address: str | None, stub_class: Any) -> Any:
        """A stub on a new channel to `address`; None without an address."""
        if not address:
            return None
        self._channels.append(grpc.insecure_channel(address))
        return stub_class(self._channels[-1])

    def close(self) -> None:
        """Close the channels; calls afterwards fail."""
        for channel in self._channels:
            channel.close()

    def __enter__(self) -> GrpcClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _unary(self, method: Any, request: Any, auth: tuple[tuple[str, str], ...]) -> Any:
        """Call a unary stub method under the deadline; gRPC errors become ServerError."""
        try:
            return method(request, timeout=self.timeout_s, metadata=auth)
        except grpc.RpcError as err:
            raise error_from_rpc(err) from None

    def _inference_stub(self) -> Any:
        """The inference stub; ValueError when the client was built without an inference address."""
        if self._inference is None:
            raise ValueError("GrpcClient was built without an inference_address")
        return self._inference

    def _manage(self, name: str, request: Any) -> str:
        """Call management method `name`; return the answer's `msg` text."""
        if self._management is None:
            raise ValueError("GrpcClient was built without a management_address")
        return self._unary(getattr(self._management, name), request, self._management_auth).msg

    def _manage_status(self, name: str, request: Any) -> dict:
        """Call a management method whose `msg` is a sentence; return it as REST does, `{"status": msg}`."""
        return {"status": self._manage(name, request)}

    # ---- inference -------------------------------------------------------------------------------

    def ping(self) -> str:
        """Server health word ("Healthy" / "Unhealthy"). TorchServe 0.12 wants the inference key here too."""
        response = self._unary(self._inference_stub().Ping, empty_pb2.Empty(), self._inference_auth)
        return _parse_health(response.health)

    def _request(
        self, model: str, body: bytes, version: str | None, input_name: str
    ) -> inference_pb2.PredictionsRequest:
        """PredictionsRequest with one input part; version None or "" means the default version."""
        return inference_pb2.PredictionsRequest(model_name=model, model_version=version or "", input={input_name: body})

    def predict(self, model: str, body: bytes, version: str | None = None, input_name: str = "data") -> bytes:
        """One inference: `body` is sent as request part `input_name`; returns the handler's answer bytes.

        `version` None means the model's default version. A handler error body raises ServerError with
        the body's code, type and message.
        """
        request = self._request(model, body, version, input_name)
        return check_prediction(self._unary(self._inference_stub().Predictions, request, self._inference_auth))

    def stream_predict(
        self, model: str, body: bytes, version: str | None = None, input_name: str = "data"
    ) -> Iterator[bytes]:
        """StreamPredictions: yield each partial answer of a streaming handler, in order.

        Only for handlers that stream (call `send_intermediate_predict_response`): TorchServe 0.12 fails a
        StreamPredictions call to a non-streaming handler with INTERNAL "Worker died." (ServerError 500)
        and restarts that worker, because such answers lack the `ts_stream_next` header. Use `predict`.
        """
        request = self._request(model, body, version, input_name)
        stub = self._inference_stub()
        try:
            for response in stub.StreamPredictions(request, timeout=self.timeout_s, metadata=self._inference_auth):
                yield check_prediction(response)
        except grpc.RpcError as err:
            raise error_from_rpc(err) from None

    # ---- management ------------------------------------------------------------------------------

    def register(
        self,
        url: str,
        model_name: str | None = None,
        batch_size: int | None = None,
        max_batch_delay_ms: int | None = None,
        initial_workers: int | None = None,
        synchronous: bool = True,
        response_timeout_s: int | None = None,
    ) -> dict:
        """Register archive `url` (a file name in the model store, or an http(s) URL); `{"status": text}`.

        None (or 0) leaves a setting to the server: name and handler from the manifest, batch size 1,
        batch delay 100 ms, `default_workers_per_model` initial workers (gRPC cannot ask for 0 workers),
        response timeout 120 s. `synchronous` waits until the initial workers are up. Needs the server's
        `enable_model_api=true`, else ServerError 403 "Model API disabled". Registering a name/version
        that exists is answered by TorchServe 0.12 with UNKNOWN and no details (ServerError 500).
        """
        request = management_pb2.RegisterModelRequest(
            url=url,
            model_name=model_name or "",
            batch_size=batch_size or 0,
            max_batch_delay=max_batch_delay_ms or 0,
            initial_workers=initial_workers or 0,
            synchronous=synchronous,
            response_timeout=response_timeout_s or 0,
        )
        return self._manage_status("RegisterModel", request)

    def scale(
        self, name: str, min_workers: int, max_workers: int, version: str | None = None, synchronous: bool = True
    ) -> dict:
        """Set the worker range of a model version (None: default version); `{"status": text}`.

        TorchServe's gRPC API reads a minimum of 0 as 1, so scaling to zero is refused here
        (UnsupportedRequestError, a ValueError); use the REST API for that. `synchronous` waits until the
        workers are started or stopped.
        """
        if min_workers < 1 or max_workers < min_workers:
            raise UnsupportedRequestError(
                f"need 1 <= min_workers <= max_workers over gRPC, got {min_workers}, {max_workers}"
                " (TorchServe's gRPC API reads 0 as 1; scale to 0 over REST)"
            )
        request = management_pb2.ScaleWorkerRequest(
            model_name=name,
            model_version=version or "",
            min_worker=min_workers,
            max_worker=max_workers,
            synchronous=synchronous,
        )
        return self._manage_status("ScaleWorker", request)

    def set_default(self, name: str, version: str) -> dict:
        """Make `version` the default version of model `name`; `{"status": text}`."""
        request = management_pb2.SetDefaultRequest(model_name=name, model_version=version)
        return self._manage_status("SetDefault", request)

    def unregister(self, name: str, version: str | None = None) -> dict:
        """Unregister a model version (None: the default version); `{"status": text}`.

        Removing the default version while other versions exist is answered by TorchServe 0.12 with
        UNKNOWN and no details (ServerError 500; REST answers 403 InvalidModelVersionException).
        """
        request = management_pb2.UnregisterModelRequest(model_name=name, model_version=version or "")
        return self._manage_status("UnregisterModel", request)

    def describe(self, name: str, version: str | None = None, customized: bool = False) -> list[dict]:
        """TorchServe's description JSON: a list with one entry per described version ("all": every one).

        Each entry has modelName, modelVersion, minWorkers, maxWorkers, batchSize, maxBatchDelay (ms),
        responseTimeout (s), workers [{id, status, ...}], ... `customized` also asks the handler's metadata.
        """
        request = management_pb2.DescribeModelRequest(
            model_name=name, model_version=version or "", customized=customized
        )
        return json.loads(self._manage("DescribeModel", request))

    def versions(self, name: str) -> list[dict]:
        """The descriptions of every registered version of a model (DescribeModel with version "all")."""
        return self.describe(name, "all")

    def list_models(self, limit: int = 100, next_page_token: int = 0) -> dict:
        """One page of registered models: `{"models": [{"modelName", "modelUrl"}, ...], "nextPageToken"?}`.

        `limit` is the page size, 1..100 (TorchServe reads more than 100 as 100); it is always sent because
        TorchServe 0.12's gRPC ListModels answers an empty page for the proto default 0. `nextPageToken`
        comes as a string of digits (the next page's offset).
        """
        if limit < 1:
            raise UnsupportedRequestError(f"limit must be >= 1, got {limit}")
        request = management_pb2.ListModelsRequest(limit=limit, next_page_token=next_page_token)
        return json.loads(self._manage("ListModels", request))

    def models(self) -> list[dict]:
        """Every registered model as `{"modelName", "modelUrl"}` (default version's archive), all pages."""
        models: list[dict] = []
        token = 0
        while True:
            page = self.list_models(100, token)
            models.extend(page.get("models", []))
            if not page.get("nextPageToken"):
                return models
            token = int(page["nextPageToken"])
