"""Eager models as TorchServe has them: the model's source file (the manifest's `modelFile`, packed from
`archive.model_source`), a factory in it (`handler.model_factory`: a callable returning the `nn.Module`) and a
state_dict as the archive's model file, read with `torch.load(weights_only=True)`."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch
from torch import nn

from handlers.backends.sniff import state_dict_of
from handlers.errors import ModelConfigError

SHOWN_KEYS = 5  # mismatched state_dict keys named in an error


def import_source(path: Path) -> object:
    """The module defined by the source file `path`, imported under its file name (registered in sys.modules, so
    the classes it defines pickle and compile as usual)."""
    if not path.is_file():
        raise ModelConfigError(f"model source {path.name} is missing from the archive (archive.model_source)")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[path.stem]
        raise ModelConfigError(f"model source {path.name} fails to import: {type(exc).__name__}: {exc}") from exc
    return module


def build_module(factory: object, where: str) -> nn.Module:
    """Call the zero-argument `factory`; ModelConfigError unless it returns an nn.Module."""
    if not callable(factory):
        raise ModelConfigError(f"{where} is a {type(factory).__name__}, not a callable returning the nn.Module")
    module = factory()
    if not isinstance(module, nn.Module):
        raise ModelConfigError(f"{where}() returned a {type(module).__name__}, not a torch.nn.Module")
    return module


def load_weights(module: nn.Module, content: object, source: str) -> nn.Module:
    """`module` with the state_dict of `content` (what `torch.load(weights_only=True)` returned: a state_dict or a
    checkpoint holding one under `state_dict`/`model`) loaded strictly, in eval mode. A `module.` prefix on every
    key (nn.DataParallel's) is dropped. ModelConfigError names missing and unexpected keys."""
    state = state_dict_of(content)
    if state is None:
        raise ModelConfigError(f"{source} holds no state_dict (a mapping of tensors, or one under "
                               f"'state_dict' or 'model'); save one with torch.save(model.state_dict(), path)")
    own = module.state_dict()
    if all(key.startswith("module.") for key in state) and not any(key.startswith("module.") for key in own):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise ModelConfigError(f"{source} does not fit the model: missing keys {missing[:SHOWN_KEYS]}"
                               f"{'...' if len(missing) > SHOWN_KEYS else ''}, unexpected keys "
                               f"{unexpected[:SHOWN_KEYS]}{'...' if len(unexpected) > SHOWN_KEYS else ''}")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # shapes that do not fit
        raise ModelConfigError(f"{source} does not fit the model: {' '.join(str(exc).split())[:400]}") from None
    return module.eval()


def eager_module(weights: Path, source: Path, factory: str, device: torch.device) -> nn.Module:
    """The eager model: `factory` of the source file `source`, with the state_dict in `weights`, on `device`."""
    module = import_source(source)
    if not hasattr(module, factory):
        raise ModelConfigError(f"handler.model_factory = {factory!r}: {source.name} defines no such name")
    model = build_module(getattr(module, factory), f"{source.name}:{factory}")
    content = torch.load(str(weights), map_location="cpu", weights_only=True)
    return load_weights(model, content, f"model file {weights.name}").to(device)
