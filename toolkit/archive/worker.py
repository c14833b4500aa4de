"""One in-process TorchServe 0.12 worker: load an archive exactly as TorchServe's Python worker does, and answer
batches in TorchServe's shape. The archive preflight, the raw bench, the tests and the Ray engine all run
handlers through this one harness, so what the preflight checked is what an engine serves.

Loading (what `ts.model_service_worker` does for a `loadModel` command): the archive (a `.mar`, extracted with
the ZipSlip-safe reader, or a folder laid out as one) has its model-config.yaml validated by the project's
schema before any archive code runs; its folder goes first on `sys.path` (the archive's own modules win over
any cached ones of the same name), and TorchServe's `TsModelLoader` imports the entry module, builds the
`ts.context.Context` (model_yaml_config, batch size, gpu id) and calls the handler's `initialize`.

Answering (what `ts.service.Service.predict` does): each `Request` becomes the frame the frontend sends (a
`body` parameter whose value is decoded as `ts.protocol.otf_message_handler` decodes it: JSON for exactly
`application/json`, text for `text/*`, else bytes; or one parameter per form field), `Service.
retrieve_data_for_inference` builds the rows and the per-request headers, the handler's entry point runs once,
and each answer takes the status, content type and headers the handler set for its index, its body serialised
as the worker does (bytes, str, a tensor by `torch.save`, anything else as JSON). A handler that raises, or
answers the wrong count, fails the whole batch with TorchServe's frontend error (503, 507 for MemoryError);
`last_failure` keeps the traceback.
"""

from __future__ import annotations

import io
import json
import logging
import sys
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from ts.model_loader import TsModelLoader
from ts.service import Service
from ts.utils.util import PredictionException

from handlers.config import ModelYaml, worker_config
from handlers.manifest import model_version
from handlers.metrics import METRICS_SINK_ATTRIBUTE, MetricsSink
from toolkit.archive.mar import MANIFEST, Archive
from toolkit.torchserve import BATCH_MISMATCH, OUT_OF_RESOURCES, PREDICTION_FAILED, FrontendError

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Request:
    """One inference request as it reaches the frontend: its raw body, the body's Content-Type, the HTTP
    headers (a Content-Type among them wins over `content_type`); or, for a form or multipart body, its
    `fields` (name -> value, as the frontend passes them) and each field's own content type (`field_types`:
    a multipart part's; urlencoded fields have none)."""

    body: bytes | str = b""
    content_type: str = "application/octet-stream"
    headers: Mapping[str, str] = field(default_factory=dict)
    fields: Mapping[str, object] | None = None
    field_types: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    """One answer: HTTP status, content type, body bytes, and the extra headers the handler set."""

    status: int
    content_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


def wire_value(body: bytes | str, content_type: str) -> Any:
    """The value TorchServe's worker hands the handler for a body: parsed JSON for exactly
    `application/json`, text for `text/*`, else the bytes; a body that fails to decode stays bytes."""
    data = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    try:
        if content_type == "application/json":
            return json.loads(data.decode("utf-8"))
        if content_type.startswith("text"):
            return data.decode("utf-8")
    except (UnicodeDecodeError, ValueError):
        return data
    return data


def frame(request: Request, request_id: str) -> dict:
    """A request as the frontend sends it to the worker: its parameters (one `body`, or one per form field
    with the empty content type the frontend gives them) and its headers, Content-Type included."""
    if request.fields is None:
        parameters = [{"name": "body", "contentType": request.content_type,
                       "value": wire_value(request.body, request.content_type)}]
    else:
        parameters = [{"name": name, "contentType": request.field_types.get(name, ""), "value": value}
                      for name, value in request.fields.items()]
    headers = dict(request.headers)
    if not any(name.lower() == "content-type" for name in headers):
        headers["Content-Type"] = request.content_type
    return {
        "requestId": request_id.encode(),
        "headers": [{"name": str(k).encode(), "value": str(v).encode()} for k, v in headers.items()],
        "parameters": parameters,
    }


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


def _media_type(body: bytes) -> str:
    """The content type of an answer whose handler set none: JSON when the body is JSON, else text."""
    try:
        json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return "text/plain"
    return "application/json"


def failed_batch(error: FrontendError, count: int) -> list[Answer]:
    """TorchServe's answer to a batch whose handler failed: every request gets the frontend's error body."""
    return [Answer(error.status, "application/json", error.body(), error.headers()) for _ in range(count)]


def read_layout(model_dir: Path) -> tuple[dict, ModelYaml]:
    """The manifest and validated model-config of a folder laid out as an extracted archive."""
    manifest = json.loads((model_dir / MANIFEST).read_text(encoding="utf-8"))
    config_file = manifest["model"].get("configFile")
    raw = yaml.safe_load((model_dir / config_file).read_text(encoding="utf-8")) if config_file else None
    return manifest, worker_config(raw, f"{model_dir.name}: model-config")


class ArchiveWorker:
    """One loaded archive in this process. `handle` answers one batch at a time, like a TorchServe worker."""

    def __init__(self, model_dir: str | Path, gpu_id: int | None = None,
                 metrics_sink: MetricsSink | None = None) -> None:
        """Load the archive laid out in `model_dir` (see the module docstring); `metrics_sink` receives the
        handler metrics (the engine's own; None: TorchServe has no frontend here, nothing is written)."""
        self.model_dir = Path(model_dir).resolve()
        self.manifest, self.config = read_layout(self.model_dir)  # validated before any archive code runs
        self.name = str(self.manifest["model"]["modelName"])
        self.version = model_version(self.manifest)
        self.last_failure: str | None = None
        entry = self.manifest["model"]["handler"]
        _import_first(self.model_dir, Path(entry).stem)
        self.service: Service = TsModelLoader().load(self.name, str(self.model_dir), entry, gpu_id,
                                                     self.config.batch_size)
        if metrics_sink is not None:
            setattr(self.service.context, METRICS_SINK_ATTRIBUTE, metrics_sink)

    @classmethod
    def from_mar(cls, mar: str | Path, work_dir: str | Path, **options: Any) -> ArchiveWorker:
        """Open `mar` (validated by `Archive.open`), extract it into `work_dir` and load it there."""
        return cls(Archive.open(mar).extract(Path(work_dir)), **options)

    @property
    def context(self):
        """TorchServe's worker Context of the loaded model."""
        return self.service.context

    @property
    def entry_point(self) -> Callable[[list, Any], list]:
        """What TorchServe calls per batch: the handler's `handle` (bound)."""
        return self.service._entry_point

    def handle(self, requests: Sequence[Request]) -> list[Answer]:
        """Answer one batch, one Answer per request in order (see the module docstring for the semantics)."""
        return self.handle_frames([frame(request, str(uuid.uuid4())) for request in requests])

    def handle_frames(self, frames: list[dict]) -> list[Answer]:
        """Answer one batch of frames as the frontend sends them (`frame`)."""
        headers, rows, ids = Service.retrieve_data_for_inference(frames)
        self.context.request_ids, self.context.request_processor = ids, headers
        try:
            outputs = self.entry_point(rows, self.context)
        except MemoryError:
            return self._failed(OUT_OF_RESOURCES, len(frames))
        except PredictionException as exc:
            return self._failed(FrontendError(exc.error_code, PREDICTION_FAILED.type, exc.message), len(frames))
        except Exception:
            return self._failed(PREDICTION_FAILED, len(frames))
        if not isinstance(outputs, list) or len(outputs) != len(frames):
            self.last_failure = f"the handler answered {outputs!r:.200} for a batch of {len(frames)}"
            return failed_batch(BATCH_MISMATCH, len(frames))
        self.last_failure = None
        return [self._answer(index, value) for index, value in enumerate(outputs)]

    def _failed(self, error: FrontendError, count: int) -> list[Answer]:
        """The batch's answers after the handler raised; its traceback kept in `last_failure` and logged."""
        self.last_failure = traceback.format_exc()
        LOG.error("handler of %s failed a batch of %d: %s", self.name, count, self.last_failure.splitlines()[-1])
        return failed_batch(error, count)

    def _answer(self, index: int, value: Any) -> Answer:
        status, _phrase = self.context.get_response_status(index)
        extra = {k: v for k, v in self.context.get_response_headers(index).items() if k.lower() != "content-type"}
        body = encode_value(value)
        return Answer(int(status or 200), self.context.get_response_content_type(index) or _media_type(body),
                      body, extra)

    def close(self) -> None:
        """Take the archive's folder off `sys.path` (the handler itself lives as long as this object)."""
        if str(self.model_dir) in sys.path:
            sys.path.remove(str(self.model_dir))


def _import_first(model_dir: Path, entry_module: str) -> None:
    """Put `model_dir` first on `sys.path` and forget cached modules the archive ships under the same top-level
    names (its entry module, a handler module of its own), so the archive's files are the ones imported.
    The `handlers` package is kept once imported: every archive ships the same library."""
    sys.path.insert(0, str(model_dir))
    shipped = {entry_module} | {path.stem for path in model_dir.glob("*.py")}
    shipped |= {path.name for path in model_dir.iterdir() if (path / "__init__.py").is_file()}
    shipped.discard("handlers")
    for name in list(sys.modules):
        if name.split(".")[0] in shipped:
            del sys.modules[name]
