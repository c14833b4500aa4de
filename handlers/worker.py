"""Worker set-up helpers: device, threads, labels."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

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
