"""`--model FILE.py:FACTORY | package.module:FACTORY [--checkpoint CKPT]`: the user's module, built by calling the
factory with no arguments, its weights loaded from a state_dict (or a checkpoint dict holding one under
`state_dict` or `model`) read with `torch.load(weights_only=True)`, in eval mode."""

from __future__ import annotations

import importlib
import importlib.util
import pickle
import sys
from pathlib import Path

import torch
from torch import nn

from handlers.backends.eager import build_module, import_source, load_weights
from handlers.errors import ModelConfigError
from toolkit.export.errors import ExportUsageError

SPEC_HELP = "expected FILE.py:FACTORY or package.module:FACTORY (a callable returning the nn.Module)"


def load_factory(spec: str) -> object:
    """The callable named by `spec`; ExportUsageError when the file, module or name is missing."""
    target, _, name = spec.rpartition(":")
    if not target or not name.isidentifier():
        raise ExportUsageError(f"--model {spec!r}: {SPEC_HELP}")
    try:
        module = _import_target(target, spec)
    except ModelConfigError as exc:
        raise ExportUsageError(f"--model {spec!r}: {exc}") from None
    if not hasattr(module, name):
        raise ExportUsageError(f"--model {spec!r}: {target} defines no {name!r}")
    return getattr(module, name)


def _import_target(target: str, spec: str) -> object:
    if target.endswith(".py"):
        path = Path(target).resolve()
        if not path.is_file():
            raise ExportUsageError(f"--model {spec!r}: {target} does not exist")
        sys.path.insert(0, str(path.parent))  # the model file may import its neighbours
        try:
            return import_source(path)
        finally:
            sys.path.remove(str(path.parent))
    try:
        return importlib.import_module(target)
    except ImportError as exc:
        raise ExportUsageError(f"--model {spec!r}: cannot import {target} ({exc}); {SPEC_HELP}") from None


def read_checkpoint(path: Path) -> object:
    """What `torch.load(path, weights_only=True)` returns; ExportUsageError for a file it refuses (an eager
    pickle of a whole module needs its code to load: save model.state_dict() instead)."""
    if not path.is_file():
        raise ExportUsageError(f"--checkpoint {path}: no such file")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportUsageError(f"--checkpoint {path.name}: not a weights-only state_dict ({first[:200]}); save one "
                               "with torch.save(model.state_dict(), path)") from None


def build_model(spec: str, checkpoint: Path | None) -> nn.Module:
    """The module of `spec`, with the checkpoint's weights when given, in eval mode on the CPU."""
    factory = load_factory(spec)
    try:
        model = build_module(factory, spec)
        if checkpoint is not None:
            model = load_weights(model, read_checkpoint(checkpoint), f"--checkpoint {checkpoint.name}")
    except ModelConfigError as exc:
        raise ExportUsageError(str(exc)) from None
    except ExportUsageError:
        raise
    except Exception as exc:  # the user's factory failed: its error, in one line
        raise ExportUsageError(f"--model {spec}: the factory raised {type(exc).__name__}: {exc}") from None
    return model.eval()
