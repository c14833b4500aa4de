"""gRPC clients for TorchServe 0.12, shaped like the REST ones (`toolkit.client.rest`): `GrpcInferenceClient`
(default port 7070) and `GrpcManagementClient` (default port 7071), each `(address, key, timeout_s)`.

Stubs come from `toolkit.client.grpc_gen`, generated at install time by `scripts/gen_grpc.py` from `proto/`.

Error contract (the same errors as the REST client):
- No server answered (connection refused, host not resolved, connection broken before the answer): gRPC
  says UNAVAILABLE, and it is raised as `ServerUnreachableError`, as REST raises it. TorchServe's own
  UNAVAILABLE answer (HTTP 503, e.g. a full job queue) stays `ServerError(503, ...)`; the two are told apart
  by gRPC core's details text (`is_unreachable`). A prediction refused for a full model queue (TorchServe 0.12
  answers it INTERNAL + InternalServerException with its "has no worker" text, measured; RESOURCE_EXHAUSTED
  from other servers) is `ServerBusyError` (status 503 / 429), and `predict` retries it (`retry`, a
  `toolkit.client.retry.RetryPolicy`), as REST does.
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
from typing import Any, Self

import grpc
from google.protobuf import empty_pb2

from toolkit.client.auth import grpc_auth
from toolkit.client.error_body import busy_or_same, parse_error_body
from toolkit.client.management import Registration
from toolkit.client.retry import RetryPolicy
from toolkit.errors import ServerError, ServerUnreachableError, UnsupportedRequestError

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


# gRPC core's words for a call that never reached a server: nothing listening ("failed to connect to all
# addresses; ... Connection refused"), a name that does not resolve ("errors resolving", "DNS resolution
# failed"), a connection that broke before the answer ("Socket closed", "Connection reset", "Broken pipe").
# TorchServe's own UNAVAILABLE answers (HTTP 503: a full job queue, no worker to serve the request) carry
# its ServiceUnavailableException message instead, which never contains these words.
_UNREACHABLE = re.compile(
    r"failed to connect|connection refused|connections to all backends failing|errors resolving"
    r"|dns resolution failed|name resolution|socket closed|connection reset|broken pipe|endpoint closing",
    re.IGNORECASE,
)


def is_unreachable(code: grpc.StatusCode, details: str | None) -> bool:
    """Whether a failed call's status says no server answered (see `_UNREACHABLE`), not a server's 503."""
    return code is grpc.StatusCode.UNAVAILABLE and bool(_UNREACHABLE.search(details or ""))


def error_from_rpc(err: grpc.RpcError, address: str) -> ServerError | ServerUnreachableError:
    """The toolkit error for a `grpc.RpcError` of a stub call to `address` (the error is also a `grpc.Call`).

    ServerUnreachableError (as the REST client raises for a refused connection) when no server answered,
    else `error_from_status`'s ServerError.
    """
    code = (err.code() if isinstance(err, grpc.Call) else None) or grpc.StatusCode.UNKNOWN
    details = err.details() if isinstance(err, grpc.Call) else str(err)
    if is_unreachable(code, details):
        reason = "connection refused" if "refused" in (details or "").lower() else details
        return ServerUnreachableError(f"cannot reach TorchServe's gRPC API at {address}: {reason}")
    return error_from_status(code, details)


def check_prediction(response: inference_pb2.PredictionResponse) -> bytes:
    """The prediction bytes, or ServerError when they are an error body or the response carries a status."""
    if response.HasField("status") and response.status.code != 0:
        code = _CODE_BY_VALUE.get(response.status.code, grpc.StatusCode.UNKNOWN)
        raise error_from_status(code, response.status.message)
    error = parse_error_body(response.prediction)
    if error is not None:
        raise ServerError(int(error["code"]), str(error["message"]), str(error["type"]))
    return response.prediction


def _parse_health(text: str) -> str:
    """Status word of TorchServe's health JSON `{"status": "Healthy"}`; the stripped text if not that."""
    try:
        obj = json.loads(text)
    except ValueError:
        return text.strip()
    return str(obj["status"]) if isinstance(obj, dict) and "status" in obj else text.strip()


class _GrpcClient:
    """One insecure channel to `address` ("host:port"), one bearer key, one deadline for every call.

    `key` is the "inference" or "management" key of TorchServe's key_file.json, sent as
    `authorization: Bearer <key>`; None sends no token (servers run with token auth disabled). `timeout_s` is
    the deadline of every call, in seconds. Use as a context manager to close the channel; calls afterwards
    raise ValueError.
    """

    def __init__(self, address: str, key: str | None, timeout_s: float) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self._metadata = grpc_auth(key)
        self._channel = grpc.insecure_channel(address)

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _unary(self, method: Any, request: Any) -> Any:
        """Call a unary stub method under the deadline; gRPC errors become toolkit errors (`error_from_rpc`)."""
        try:
            return method(request, timeout=self.timeout_s, metadata=self._metadata)
        except grpc.RpcError as err:
            raise error_from_rpc(err, self.address) from None

    def _streamed(self, method: Any, request: Any) -> Iterator[Any]:
        """Each answer of a server-streaming stub method, under one deadline for the whole stream."""
        try:
            yield from method(request, timeout=self.timeout_s, metadata=self._metadata)
        except grpc.RpcError as err:
            raise error_from_rpc(err, self.address) from None


class GrpcInferenceClient(_GrpcClient):
    """Client of TorchServe's gRPC inference API (`grpc_inference_address`, default port 7070), authorized
    with the inference key. Failures raise ServerError (see the module docstring), a server that cannot be
    reached ServerUnreachableError. `retry` says how a prediction refused for a full queue is retried (default:
    5 tries within 10 s; `RetryPolicy.off()`: none); each try has its own `timeout_s` deadline."""

    def __init__(
        self, address: str, key: str | None, timeout_s: float = 60.0, retry: RetryPolicy | None = None
    ) -> None:
        super().__init__(address, key, timeout_s)
        self.retry = retry or RetryPolicy()
        self._stub = inference_pb2_grpc.InferenceAPIsServiceStub(self._channel)

    def ping(self) -> str:
        """Server health word ("Healthy" / "Unhealthy"). TorchServe 0.12 wants the inference key here too."""
        return _parse_health(self._unary(self._stub.Ping, empty_pb2.Empty()).health)

    @staticmethod
    def _request(model: str, body: bytes, version: str | None, input_name: str) -> inference_pb2.PredictionsRequest:
        """PredictionsRequest with one input part; version None or "" means the default version."""
        return inference_pb2.PredictionsRequest(model_name=model, model_version=version or "", input={input_name: body})

    def predict(self, model: str, body: bytes, version: str | None = None, input_name: str = "data") -> bytes:
        """One inference: `body` is sent as request part `input_name`; returns the handler's answer bytes.

        `version` None means the model's default version. A handler error body raises ServerError with
        the body's code, type and message.
        """
        request = self._request(model, body, version, input_name)

        def once() -> bytes:
            try:
                return check_prediction(self._unary(self._stub.Predictions, request))
            except ServerError as exc:
                raise busy_or_same(exc) from None

        return self.retry.call(once)

    def stream_predict(
        self, model: str, body: bytes, version: str | None = None, input_name: str = "data"
    ) -> Iterator[bytes]:
        """StreamPredictions: yield each partial answer of a streaming handler, in order.

        Only for handlers that stream (call `send_intermediate_predict_response`): TorchServe 0.12 fails a
        StreamPredictions call to a non-streaming handler with INTERNAL "Worker died." (ServerError 500)
        and restarts that worker, because such answers lack the `ts_stream_next` header. Use `predict`.
        """
        request = self._request(model, body, version, input_name)
        for response in self._streamed(self._stub.StreamPredictions, request):
            yield check_prediction(response)


class GrpcManagementClient(_GrpcClient):
    """Client of TorchServe's gRPC management API (`grpc_management_address`, default port 7071), authorized
    with the management key; satisfies `toolkit.client.management.ManagementApi`. Failures raise ServerError,
    a server that cannot be reached ServerUnreachableError.

    Default timeout is long because a synchronous registration waits for the workers to load the model.
    """

    def __init__(self, address: str, key: str | None, timeout_s: float = 300.0) -> None:
        super().__init__(address, key, timeout_s)
        self._stub = management_pb2_grpc.ManagementAPIsServiceStub(self._channel)

    def _manage(self, name: str, request: Any) -> str:
        """Call management method `name`; return the answer's `msg` text."""
        return self._unary(getattr(self._stub, name), request).msg

    def _manage_status(self, name: str, request: Any) -> dict:
        """Call a management method whose `msg` is a sentence; return it as REST does, `{"status": msg}`."""
        return {"status": self._manage(name, request)}

    def register(self, url: str | Registration, **options: Any) -> dict:
        """Register an archive (a file name in the model store, or an http(s) URL); `{"status": text}`.

        `options` are the fields of `Registration`; None leaves a setting to the archive, then the server.
        gRPC cannot ask for 0 initial workers (TorchServe reads 0 as "server default"), so 0 is refused
        here (UnsupportedRequestError); register over REST for that. `synchronous` waits until the initial
        workers are up. Needs the server's `enable_model_api=true`, else ServerError 403 "Model API
        disabled". Registering a name/version that exists is answered by TorchServe 0.12 with UNKNOWN and
        no details (ServerError 500).
        """
        reg = Registration.of(url, **options)
        if reg.initial_workers == 0:
            raise UnsupportedRequestError(
                "initial_workers=0 cannot be sent over gRPC (TorchServe reads 0 as its default; register over REST)"
            )
        request = management_pb2.RegisterModelRequest(
            url=reg.url,
            model_name=reg.model_name or "",
            batch_size=reg.batch_size or 0,
            max_batch_delay=reg.max_batch_delay_ms or 0,
            initial_workers=reg.initial_workers or 0,
            synchronous=reg.synchronous,
            response_timeout=reg.response_timeout_s or 0,
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
