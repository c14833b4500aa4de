"""Run a handler without a server, through TorchServe's own `Context` and `RequestProcessor` objects.

This is what a TorchServe worker does around `handle()`, minus the sockets: the preflight of `make archive`
and the unit tests use it, so a handler is exercised exactly as the worker will call it.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from ts.context import Context, RequestProcessor


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


def run_batch(handler, context: Context, bodies: list[object], key: str = "body") -> list[OfflineAnswer]:
    """Send `bodies` as one batch, each as TorchServe would hand it over (`{key: body}`)."""
    context.request_processor = [RequestProcessor({}) for _ in bodies]
    context.request_ids = {i: f"offline-{i}" for i in range(len(bodies))}
    outputs = handler.handle([{key: body} for body in bodies], context)
    if len(outputs) != len(bodies):
        raise AssertionError(f"expected {len(bodies)} answers, got {len(outputs)}")
    return [
        OfflineAnswer(context.get_response_status(i)[0], context.get_response_content_type(i), outputs[i])
        for i in range(len(bodies))
    ]
