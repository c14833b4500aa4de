"""Run a handler without a server, through TorchServe's own `Context` and request parsing.

This is what a TorchServe worker does around `handle()`, minus the sockets: `load_handler` initialises a handler
from a model folder as the worker does at load time, and `run_requests` hands it a batch built by the worker's own
`Service.retrieve_data_for_inference` from the frontend's request frames. The preflight of `make archive`, the
raw benchmark and the tests use it, so a handler is exercised exactly as the worker will call it.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import yaml
from ts.context import Context
from ts.service import Service


@dataclass(frozen=True)
class OfflineAnswer:
    """One request's outcome: HTTP status, content type and the body the handler returned."""

    status: int
    content_type: str | None
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


def make_context(
    model_dir: Path, manifest: dict, model_yaml_config: dict, gpu_id: int | None = None, batch_size: int = 1
) -> Context:
    """A worker context for a model extracted (or staged) in `model_dir`."""
    name = manifest["model"]["modelName"]
    return Context(name, str(model_dir), manifest, batch_size, gpu_id, "offline", True, None, model_yaml_config)


def load_entry_class(entry_file: Path) -> type:
    """The single class an entry module defines, as TorchServe's loader picks it."""
    spec = importlib.util.spec_from_file_location(entry_file.stem, entry_file)
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    classes = [c for _, c in inspect.getmembers(module, inspect.isclass) if c.__module__ == module.__name__]
    if len(classes) != 1:
        raise ValueError(f"{entry_file.name} must define exactly one class; found {[c.__name__ for c in classes]}")
    return classes[0]


def load_handler(model_dir: Path, manifest: dict | None = None, model_config: dict | None = None, *,
                 handler_class: type | None = None, batch_size: int | None = None,
                 gpu_id: int | None = None) -> tuple[object, Context]:
    """A handler initialised in-process over `model_dir`, laid out like an extracted archive; (handler, context).

    Defaults are read from `model_dir` as TorchServe reads them: `manifest` from MAR-INF/MANIFEST.json,
    `model_config` from the manifest's `configFile`, `handler_class` as the single class of the manifest's
    `handler` entry file, `batch_size` from the config's `batchSize` (else 1).
    """
    model_dir = Path(model_dir)
    if manifest is None:
        manifest = json.loads((model_dir / "MAR-INF" / "MANIFEST.json").read_text(encoding="utf-8"))
    if model_config is None:
        config_file = model_dir / manifest["model"].get("configFile", "model-config.yaml")
        model_config = yaml.safe_load(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    if handler_class is None:
        handler_class = load_entry_class(model_dir / Path(manifest["model"]["handler"]).name)
    if batch_size is None:
        batch_size = int(model_config.get("batchSize", 1))
    context = make_context(model_dir, manifest, model_config, gpu_id=gpu_id, batch_size=batch_size)
    handler = handler_class()
    handler.initialize(context)
    return handler, context


def request_frame(parameters: dict[str, object], headers: dict[str, str] | None = None,
                  content_types: dict[str, str] | None = None, request_id: str = "offline") -> dict:
    """One request as the frontend sends it to the worker (`ts.protocol.otf_message_handler` decodes it so):
    one parameter per body, form field or query parameter, each with its content type ("" when the frontend
    has none, as for urlencoded form fields), and the HTTP request headers."""
    content_types = content_types or {}
    return {
        "requestId": request_id.encode(),
        "headers": [{"name": k.encode(), "value": v.encode()} for k, v in (headers or {}).items()],
        "parameters": [{"name": name, "contentType": content_types.get(name, ""), "value": value}
                       for name, value in parameters.items()],
    }


def run_requests(handler, context: Context, frames: list[dict]) -> list[OfflineAnswer]:
    """Send `frames` (see `request_frame`) as one batch, through the worker's own request parsing."""
    processors, rows, request_ids = Service.retrieve_data_for_inference(frames)
    context.request_processor = processors
    context.request_ids = request_ids
    outputs = handler.handle(rows, context)
    if len(outputs) != len(frames):
        raise AssertionError(f"expected {len(frames)} answers, got {len(outputs)}")
    return [
        OfflineAnswer(context.get_response_status(i)[0], context.get_response_content_type(i), outputs[i])
        for i in range(len(frames))
    ]


def run_batch(handler, context: Context, bodies: list[object], key: str = "body") -> list[OfflineAnswer]:
    """Send `bodies` as one batch, each as TorchServe hands a plain body over (`{key: body}`)."""
    frames = [request_frame({key: body}, request_id=f"offline-{i}") for i, body in enumerate(bodies)]
    return run_requests(handler, context, frames)
