"""Small fakes of TorchServe 0.12 for the unit tests: its REST APIs (`StubTorchServe`, a real HTTP server on
127.0.0.1) and its gRPC APIs (`FakeGrpc`, real gRPC on a loopback port).

They answer the way a real TorchServe 0.12 was observed to answer: the token check and its message, error
bodies and statuses, the health JSON, gRPC error details with the Java exception class on the last line,
management sentences in `msg` and JSON for describe/list. The fixtures `stub`, `fake_grpc` and
`fake_management` (tests/unit/conftest.py) start them (the gRPC one once per session, reset per test); tests
import the names below for the keys and for type annotations.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import grpc
from google.protobuf import json_format

from toolkit.client.grpc_gen import inference_pb2, inference_pb2_grpc, management_pb2, management_pb2_grpc
from toolkit.torchserve import NO_WORKER, RESOURCE_NOT_FOUND, TOKEN_FAILED

INFERENCE_KEY = "infer-key"
MANAGEMENT_KEY = "mgmt-key"
# The shape of the key_file.json TorchServe writes at start (see toolkit.client.auth).
KEY_FILE = {"management": {"key": MANAGEMENT_KEY}, "inference": {"key": INFERENCE_KEY}, "API": {"key": "api"}}

# TorchServe 0.12's message for a request it has no room for (REST: 503 ServiceUnavailableException).
FULL_QUEUE = NO_WORKER.text(model="full")


# ---- REST ---------------------------------------------------------------------------------------------

Answer = tuple[int, bytes]
Route = Answer | Callable[[dict[str, str]], Answer]


def error_body(status: int, kind: str, message: str) -> bytes:
    """TorchServe's error body (Gson pretty printing), as its frontend and our handlers send it."""
    return json.dumps({"code": status, "type": kind, "message": message}, indent=2).encode()


@dataclass
class Seen:
    """One request as the stub received it."""

    method: str
    raw_path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


class StubTorchServe:
    """A threaded HTTP server on 127.0.0.1:<free port>; answers (method, path) from `routes`, 404 else."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Route] = {}
        self.seen: list[Seen] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                headers = {k.lower(): v for k, v in self.headers.items()}
                stub.seen.append(Seen(self.command, parts.path, query, headers, self.rfile.read(length)))
                route = stub.routes.get((self.command, parts.path))
                if route is None:
                    missing = RESOURCE_NOT_FOUND
                    status, body = missing.status, error_body(missing.status, missing.type, missing.text())
                else:
                    status, body = route(query) if callable(route) else route
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, format: str, *args: object) -> None:  # keep stderr for the CLI under test
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def ok(self, method: str, path: str, payload: object, status: int = 200) -> None:
        self.routes[(method, path)] = (status, json.dumps(payload).encode())

    def fail(self, method: str, path: str, status: int, kind: str, message: str) -> None:
        self.routes[(method, path)] = (status, error_body(status, kind, message))

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


# ---- gRPC ---------------------------------------------------------------------------------------------

SC = grpc.StatusCode
NOT_FOUND_CLASS = "org.pytorch.serve.archive.model.ModelNotFoundException"


def _authorised(context: grpc.ServicerContext, key: str) -> None:
    """Refuse the call the way TorchServe 0.12 does when the bearer token is absent or wrong."""
    if dict(context.invocation_metadata()).get("authorization") != f"Bearer {key}":
        context.abort(SC.PERMISSION_DENIED, TOKEN_FAILED)


def _answer(request: inference_pb2.PredictionsRequest, context: grpc.ServicerContext) -> bytes:
    """Fake handler: echo the input parts; model "bad" answers an error body; model "missing" fails."""
    if request.model_name == "missing":
        context.abort(SC.INTERNAL, f"Model not found: {request.model_name}\n{NOT_FOUND_CLASS}")
    if request.model_name == "bad":
        return json.dumps({"code": 400, "type": "decode_error", "message": "not an image"}).encode()
    parts = {k: v.decode() for k, v in request.input.items()}
    return json.dumps({"model": request.model_name, "version": request.model_version, "input": parts}).encode()


class FakeInference(inference_pb2_grpc.InferenceAPIsServiceServicer):
    """Inference API answering as TorchServe 0.12 does (token check, health JSON, error details).

    Model "slow" waits for `release` (up to 10 s); model "full" is refused as TorchServe refuses a request
    it has no room for (REST's 503 ServiceUnavailableException, which GRPCUtils maps to UNAVAILABLE).
    """

    def __init__(self) -> None:
        self.release = threading.Event()

    def Ping(self, request, context):  # noqa: N802 - gRPC method name
        _authorised(context, INFERENCE_KEY)
        return inference_pb2.TorchServeHealthResponse(health='{\n  "status": "Healthy"\n}')

    def Predictions(self, request, context):  # noqa: N802
        _authorised(context, INFERENCE_KEY)
        if request.model_name == "slow":
            self.release.wait(10)
        if request.model_name == "full":
            context.abort(SC.UNAVAILABLE, FULL_QUEUE)
        return inference_pb2.PredictionResponse(prediction=_answer(request, context))

    def StreamPredictions(self, request, context):  # noqa: N802
        _authorised(context, INFERENCE_KEY)
        yield inference_pb2.PredictionResponse(prediction=b'{"part": 1}')
        yield inference_pb2.PredictionResponse(prediction=_answer(request, context))


# What DescribeModel tells about each version of a model (any other version is described like "1.0").
DESCRIBED = {
    "1.0": {"minWorkers": 1, "maxWorkers": 1, "batchSize": 1, "maxBatchDelay": 100,
            "workers": [{"id": "9000", "status": "READY"}]},
    "2.0": {"minWorkers": 2, "maxWorkers": 2, "batchSize": 8, "maxBatchDelay": 50,
            "workers": [{"id": "9001", "status": "READY"}, {"id": "9002", "status": "WORKER_STARTED"}]},
}


def described(name: str, version: str) -> dict:
    """The description DescribeModel answers for one version of model `name`."""
    return {"modelName": name, "modelVersion": version, **DESCRIBED.get(version, DESCRIBED["1.0"])}


class FakeManagement(management_pb2_grpc.ManagementAPIsServiceServicer):
    """Management API answering with TorchServe 0.12's texts (recorded from a real server): a sentence in
    `msg` for register/scale/set-default/unregister, JSON for describe/list. Model "missing" is NOT_FOUND.

    Every authorised request is appended to `seen` as its proto3-JSON dict (fields left at default omitted).
    `models` are the names ListModels pages through, in order. `archive_min_workers` maps an archive url to the
    minWorkers of its model-config, which wins over the request's initial_workers (TorchServe issue #2851).
    Version "1.0" is the default version (DescribeModel without a version describes it).
    """

    def __init__(self) -> None:
        self.seen: list[dict] = []
        self.models: list[str] = []
        self.archive_min_workers: dict[str, int] = {}
        self.reset()

    def reset(self) -> None:
        """No request seen yet, the one model "m", archives without a worker range."""
        self.seen.clear()
        self.models = ["m"]
        self.archive_min_workers = {}

    def _accept(self, request, context) -> None:
        _authorised(context, MANAGEMENT_KEY)
        self.seen.append({type(request).__name__: json_format.MessageToDict(request, preserving_proto_field_name=True)})
        if getattr(request, "model_name", "") == "missing":
            context.abort(SC.NOT_FOUND, f"Model not found: missing\n{NOT_FOUND_CLASS}")

    def _reply(self, text: str) -> management_pb2.ManagementResponse:
        return management_pb2.ManagementResponse(msg=text)

    def RegisterModel(self, request, context):  # noqa: N802 - gRPC method name
        self._accept(request, context)
        name = request.model_name or request.url.removesuffix(".mar")
        workers = self.archive_min_workers.get(request.url) or request.initial_workers or 1
        text = f'Model "{name}" Version: 1.0 registered with {workers} initial workers'
        return self._reply(text if request.synchronous else "Processing worker updates...")

    def ScaleWorker(self, request, context):  # noqa: N802
        self._accept(request, context)
        version = f", version: {request.model_version}" if request.model_version else ""
        text = f"Workers scaled to {request.min_worker} for model: {request.model_name}{version}"
        return self._reply(text if request.synchronous else "Processing worker updates...")

    def SetDefault(self, request, context):  # noqa: N802
        self._accept(request, context)
        model, version = request.model_name, request.model_version
        return self._reply(f'Default version successfully updated for model "{model}" to "{version}"')

    def UnregisterModel(self, request, context):  # noqa: N802
        self._accept(request, context)
        return self._reply(f'Model "{request.model_name}" unregistered')

    def DescribeModel(self, request, context):  # noqa: N802
        self._accept(request, context)
        versions = ["1.0", "2.0"] if request.model_version == "all" else [request.model_version or "1.0"]
        return self._reply(json.dumps([described(request.model_name, v) for v in versions], indent=2))

    def ListModels(self, request, context):  # noqa: N802
        self._accept(request, context)
        start, end = request.next_page_token, request.next_page_token + min(request.limit, 100)
        page: dict = {"models": [{"modelName": n, "modelUrl": f"{n}.mar"} for n in self.models[start:end]]}
        if end < len(self.models):
            page = {"nextPageToken": str(end), **page}
        return self._reply(json.dumps(page, indent=2))


@dataclass
class FakeGrpc:
    """The running fake: one loopback address ("127.0.0.1:<port>") serving both APIs."""

    address: str
    inference: FakeInference
    management: FakeManagement
    server: grpc.Server

    @classmethod
    def start(cls) -> FakeGrpc:
        """A fake on a free loopback port, serving."""
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        inference, management = FakeInference(), FakeManagement()
        inference_pb2_grpc.add_InferenceAPIsServiceServicer_to_server(inference, server)
        management_pb2_grpc.add_ManagementAPIsServiceServicer_to_server(management, server)
        address = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
        server.start()
        return cls(address, inference, management, server)

    def stop(self) -> None:
        """Release waiting calls and stop serving."""
        self.inference.release.set()
        self.server.stop(None)
