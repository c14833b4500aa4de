"""A TorchServe 0.12 worker without Java: open a `.mar`, load its handler as TorchServe's worker does, and
answer batches of requests with TorchServe's semantics. Engines (Ray Serve) wrap it; it knows none of them.

Loading (what `ts.model_service_worker` does for a `loadModel` command): the archive is extracted with our
ZipSlip-safe reader, its model-config.yaml is validated with the project's schema (a mistyped key is refused,
not ignored), the folder is put first on `sys.path` (so the archive's own `handlers` package is imported), and
TorchServe's own `TsModelLoader` imports the entry module, builds the `ts.context.Context` (model_yaml_config,
batch size, gpu id) and calls the handler's `initialize`.

Answering (what `ts.service.Service.predict` does): each request becomes a row of TorchServe's worker batch
(parameter `body`, JSON bodies parsed and text bodies decoded exactly as `ts.protocol.otf_message_handler`
does), `Service.retrieve_data_for_inference` builds the rows and the per-request `RequestProcessor`s, the
handler's `handle(rows, context)` runs once, and each answer takes the status, content type and headers the
handler set for its index. A handler that raises, or answers the wrong count, fails the whole batch with
TorchServe's 503 (507 for MemoryError), as TorchServe would.
"""

from __future__ import annotations

import io
import json
import logging
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from ts.metrics.metric_cache_yaml_impl import MetricsCacheYamlImpl
from ts.model_loader import TsModelLoader
from ts.service import Service

from toolkit.archive.mar import Archive

LOG = logging.getLogger(__name__)
DEFAULT_METRICS_CONFIG = Path(sys.modules["ts"].__file__).parent / "configs" / "metrics.yaml"


@dataclass(frozen=True)
class Request:
    """One inference request: raw body bytes, its Content-Type, and the request headers (lower-case names)."""

    body: bytes
    content_type: str = "application/octet-stream"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    """One answer: HTTP status, content type, body bytes, and the extra headers the handler set."""

    status: int
    content_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def wire_value(body: bytes, content_type: str) -> Any:
    """The value TorchServe's worker hands the handler for a body: parsed JSON for application/json, text for
    text/*, else the bytes; a body that fails to parse is passed on as bytes (as TorchServe does)."""
    media = content_type.split(";", 1)[0].strip().lower()
    try:
        if media == "application/json":
            return json.loads(body.decode("utf-8"))
        if media.startswith("text"):
            return body.decode("utf-8")
    except (UnicodeDecodeError, ValueError):
        return body
    return body


def encode_value(value: Any) -> bytes:
    """A handler's answer as TorchServe's worker writes it: bytes as they are, str as UTF-8, a tensor with
    torch.save, anything else as indented JSON."""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, torch.Tensor):
        buffer = io.BytesIO()
        torch.save(value, buffer)
        return buffer.getvalue()
    return json.dumps(value, indent=2).encode("utf-8")


def _media_type(body: bytes, declared: str | None) -> str:
    """The answer's content type: what the handler set, else JSON when the body is JSON, else text."""
    if declared:
        return declared
    try:
        json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return "text/plain"
    return "application/json"


def _error(status: int, message: str, count: int) -> list[Answer]:
    """TorchServe's whole-batch failure: every request gets `status` and the message as its body."""
    body = json.dumps({"code": status, "type": "InternalServerException", "message": message}).encode()
    return [Answer(status, "application/json", body) for _ in range(count)]


class ArchiveWorker:
    """One loaded archive. `handle` is not thread-safe (one batch at a time, like a TorchServe worker)."""

    def __init__(self, mar: str | Path, work_dir: str | Path, gpu_id: int | None = None) -> None:
        self.mar = Path(mar).resolve()
        self.model_dir = Path(work_dir).resolve()
        archive = Archive.open(self.mar)  # validated before any archive code runs: a mistyped key is refused
        self.name, self.version, self.config = archive.name, archive.version, archive.config
        manifest = archive.manifest["model"]
        archive.extract(self.model_dir)
        sys.path.insert(0, str(self.model_dir))  # the archive's own `handlers` package wins
        metrics = MetricsCacheYamlImpl(config_file_path=str(DEFAULT_METRICS_CONFIG))
        metrics.initialize_cache()
        metrics.model_name = self.name
        self.service: Service = TsModelLoader().load(
            self.name, str(self.model_dir), manifest["handler"], gpu_id, self.config.batch_size,
            metrics_cache=metrics,
        )

    def handle(self, requests: list[Request]) -> list[Answer]:
        """Answer one batch, one Answer per request in order (see the module docstring for the semantics)."""
        batch = [self._row(request) for request in requests]
        headers, rows, ids = Service.retrieve_data_for_inference(batch)
        context = self.service.context
        context.request_ids, context.request_processor = ids, headers
        if context.metrics is not None:
            context.metrics.request_ids = ids
        try:
            outputs = self.service._entry_point(rows, context)
        except MemoryError:
            LOG.exception("out of memory in %s", self.name)
            return _error(507, "Out of resources", len(requests))
        except Exception:
            LOG.exception("handler of %s failed the batch", self.name)
            return _error(503, "Prediction failed", len(requests))
        if not isinstance(outputs, list) or len(outputs) != len(requests):
            return _error(503, "number of batch response mismatched", len(requests))
        return [self._answer(context, index, value) for index, value in enumerate(outputs)]

    @staticmethod
    def _row(request: Request) -> dict:
        """A request in the shape TorchServe's worker receives it from the frontend."""
        names = {"content-type": request.content_type, **{k.lower(): v for k, v in request.headers.items()}}
        return {
            "requestId": str(uuid.uuid4()).encode(),
            "headers": [{"name": k.encode(), "value": str(v).encode()} for k, v in names.items()],
            "parameters": [
                {"name": "body", "contentType": request.content_type,
                 "value": wire_value(request.body, request.content_type)}
            ],
        }

    @staticmethod
    def _answer(context: Any, index: int, value: Any) -> Answer:
        status, _phrase = context.get_response_status(index)
        body = encode_value(value)
        extra = {k: v for k, v in context.get_response_headers(index).items() if k.lower() != "content-type"}
        return Answer(int(status or 200), _media_type(body, context.get_response_content_type(index)), body, extra)
