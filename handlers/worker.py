"""Worker set-up: device, threads, the model's backend and labels, read from TorchServe's Context."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from handlers.backends import Backend, load_archive_model
from handlers.config import ModelYaml
from handlers.errors import ModelConfigError

logger = logging.getLogger(__name__)


def select_device(system_properties: dict) -> torch.device:
    """`cuda:<gpu_id>` when TorchServe gave this worker a GPU and CUDA is available, else the CPU."""
    gpu_id = system_properties.get("gpu_id")
    if gpu_id is not None and torch.cuda.is_available():
        return torch.device(f"cuda:{int(gpu_id)}")
    return torch.device("cpu")


def choose_threads(configured: int, max_workers: int, cores: int) -> int:
    """Intra-op threads for one worker: the configured number, else cores / workers, at least 1."""
    return configured if configured > 0 else max(1, cores // max(1, max_workers))


def apply_threads(threads: int) -> None:
    """Set this worker process's torch thread pools (intra-op `threads`, inter-op 1)."""
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already fixed once this process ran parallel work; intra-op still applies
        logger.debug("inter-op threads already set")


def load_labels(path: Path | None) -> list[str] | None:
    """Class names from an `index_to_name.json` ({"0": "name", ...}), in index order."""
    if path is None:
        return None
    if not path.is_file():
        raise ModelConfigError(f"labels file {path.name} is missing from the archive")
    mapping = json.loads(path.read_text(encoding="utf-8"))
    return [str(mapping[str(i)]) for i in range(len(mapping))]


@dataclass(frozen=True)
class WorkerSetup:
    """What a worker serves with: its device, torch threads, the model's backend and the labels (or None)."""

    device: torch.device
    threads: int
    model: Backend
    labels: list[str] | None


def set_up(context, config: ModelYaml) -> WorkerSetup:
    """Device (TorchServe's gpu_id), threads (`handler.threads`, else cores / maxWorkers, applied to this
    process), the model file's backend and the labels file, from the worker's Context."""
    model_dir = Path(context.system_properties["model_dir"])
    settings = config.handler
    device = select_device(context.system_properties)
    threads = choose_threads(settings.threads, config.max_workers, len(os.sched_getaffinity(0)))
    apply_threads(threads)
    model = load_archive_model(model_dir, context.manifest, config, device, threads)
    labels = load_labels(model_dir / settings.labels if settings.labels else None)
    return WorkerSetup(device, threads, model, labels)
