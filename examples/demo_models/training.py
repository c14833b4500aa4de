"""What the demo models' builds share: splits, the training loop, the export checks and the build's errors.

Each demo model has a module of its own (``mnist``, ``tabular``) with a ``build(out_dir, seed, log) -> metrics``
function that trains, exports, checks and writes ``build/models/<name>/``; ``build_models`` runs them. Every
model is exported in every serving format: ``<name>.pt`` (TorchScript, the legacy format), ``<name>.onnx``,
``<name>_exported.pt2`` (ExportedProgram) and ``<name>_aoti.pt2`` (AOTInductor package, CPU), each checked
against the eager module on the whole held-out set through the backend a worker serves it with.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from handlers.backends import load_backend
from toolkit.export.formats import WRITERS, Format
from toolkit.export.torchscript import (
    ONNX_MAX_ABS_DIFF,
    check_onnx,
    check_optimized,
    check_torchscript,
    export_onnx,
    load_torchscript,
    predict,
    save_torchscript,
    to_torchscript,
)

HELDOUT_FRACTION = 0.2
Log = Callable[[str], None]


class BuildError(RuntimeError):
    """A model missed its accuracy threshold or an export check failed."""


@dataclass
class Split:
    """Stratified split: ``x_*`` as the server receives it (uint8 images / float64 features)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_held: np.ndarray
    y_held: np.ndarray


@dataclass
class TrainConfig:
    """Optimiser settings: AdamW with a one-cycle learning-rate schedule, cross-entropy on log-probs with
    ``label_smoothing`` (the share of each target spread evenly over the classes; 0 = plain NLL)."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.0
    log_every: int = 1
    label_smoothing: float = 0.0


def stratified_split(x: np.ndarray, y: np.ndarray, seed: int) -> Split:
    """Split ``x``/``y`` with ``HELDOUT_FRACTION`` held out, stratified by label, fixed seed."""
    from sklearn.model_selection import train_test_split

    x_tr, x_he, y_tr, y_he = train_test_split(
        x, y, test_size=HELDOUT_FRACTION, stratify=y, random_state=seed
    )
    return Split(x_tr, y_tr.astype(np.int64), x_he, y_he.astype(np.int64))


def fit(model: nn.Module, epoch_data: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
        config: TrainConfig, log: Callable[[str], None]) -> float:
    """Train ``model`` in place; ``epoch_data(epoch)`` gives that epoch's (inputs, labels).

    Returns the training wall time in seconds. Uses the global torch RNG (seeded by the caller).
    """
    start = time.perf_counter()
    x0, y0 = epoch_data(0)
    steps = config.epochs * -(-len(x0) // config.batch_size)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=config.lr, total_steps=steps)
    for epoch in range(config.epochs):
        x, y = (x0, y0) if epoch == 0 else epoch_data(epoch)
        loss, acc = _train_epoch(model, x, y, config, optimiser, schedule)
        if (epoch + 1) % config.log_every == 0 or epoch + 1 == config.epochs:
            log(f"epoch {epoch + 1:2d}/{config.epochs}  loss={loss:.4f}  train_acc={acc:.4f}  "
                f"({time.perf_counter() - start:.1f}s)")
    model.eval()
    return time.perf_counter() - start


def _train_epoch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: TrainConfig,
                 optimiser: torch.optim.Optimizer, schedule: torch.optim.lr_scheduler.LRScheduler,
                 ) -> tuple[float, float]:
    """One shuffled pass; returns (mean loss, accuracy) over the epoch's samples."""
    model.train()
    order = torch.randperm(len(x))
    total_loss, correct = 0.0, 0
    for i in range(0, len(x), config.batch_size):
        idx = order[i : i + config.batch_size]
        out = model(x[idx])
        # the models answer log-probabilities: cross-entropy's log-softmax leaves them as they are
        loss = F.cross_entropy(out, y[idx], label_smoothing=config.label_smoothing)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        total_loss += loss.detach().item() * len(idx)
        correct += int((out.argmax(1) == y[idx]).sum())
    return total_loss / len(x), correct / len(x)


def accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    """Fraction of equal entries (0.0 for empty input)."""
    return float((pred == y).mean()) if len(y) else 0.0


def export_and_check(model: nn.Module, x_held: torch.Tensor, out_dir: Path, name: str,
                     log: Callable[[str], None]) -> tuple[torch.jit.ScriptModule, dict]:
    """Write ``<name>.pt`` and ``<name>.onnx`` and check both on the whole held-out input ``x_held``.

    The TorchScript file is reloaded from disk before checking. Returns (reloaded module, diffs).
    """
    model.eval()
    ts_path, onnx_path = out_dir / f"{name}.pt", out_dir / f"{name}.onnx"
    save_torchscript(to_torchscript(model), ts_path)
    scripted = load_torchscript(ts_path)
    ts_diff = check_torchscript(model, scripted, x_held)
    log(f"TorchScript == eager on {len(x_held)} held-out inputs (max abs diff {ts_diff:.2e})")
    opt_diff = check_optimized(model, scripted, x_held)
    log(f"served forward (frozen + optimize_for_inference) vs eager: max abs diff {opt_diff:.2e}")
    export_onnx(model, x_held[:2], onnx_path)
    onnx_diff = check_onnx(onnx_path, x_held.numpy(), predict(scripted, x_held).numpy())
    log(f"ONNX (onnxruntime CPU) vs TorchScript: max abs diff {onnx_diff:.2e}")
    checks = {"torchscript_vs_eager_max_abs_diff": ts_diff, "onnx_vs_torchscript_max_abs_diff": onnx_diff,
              "optimized_vs_eager_max_abs_diff": opt_diff,
              # what the CPU workers run for the .pt (handlers.backends.TorchScriptBackend); `make bench` raw phase
              # compares every format's forward (bench/README.md)
              "served_forward": "torchscript frozen + optimize_for_inference (CPU)"}
    for fmt in (Format.EXPORTED, Format.AOTI):
        checks.update(export_pt2(model, x_held, out_dir / f"{name}_{fmt}.pt2", fmt, log))
    return scripted, checks


def export_pt2(model: nn.Module, x_held: torch.Tensor, path: Path, fmt: Format, log: Callable[[str], None]) -> dict:
    """Write ``path`` in ``fmt`` (ExportedProgram or AOTInductor package, CPU, dynamic batch) and check the
    backend a worker serves it with against eager on the whole held-out input (max abs diff <= the ONNX
    tolerance). Returns its metrics: the diff, the export's wall time (s) and the file's size (bytes)."""
    start = time.perf_counter()
    WRITERS[fmt](model, (x_held[:2],), path, torch.device("cpu"), ["output"])
    seconds = time.perf_counter() - start
    backend = load_backend(path, torch.device("cpu"), threads=torch.get_num_threads())
    diff = float((predict(backend, x_held) - predict(model, x_held)).abs().max())
    log(f"{fmt} ({path.name}, {seconds:.1f} s, {path.stat().st_size / 1e6:.2f} MB) vs eager on "
        f"{len(x_held)} held-out inputs: max abs diff {diff:.2e}")
    require(diff <= ONNX_MAX_ABS_DIFF, f"{path.name} differs from eager by {diff:.3g} > {ONNX_MAX_ABS_DIFF}")
    return {f"{fmt}_vs_eager_max_abs_diff": diff, f"{fmt}_export_seconds": round(seconds, 2),
            f"{fmt}_bytes": path.stat().st_size}


def require(condition: bool, message: str) -> None:
    """Raise ``BuildError(message)`` unless ``condition``."""
    if not condition:
        raise BuildError(message)


def write_json(path: Path, payload: object) -> None:
    """Write ``payload`` as indented JSON (parent directories created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
