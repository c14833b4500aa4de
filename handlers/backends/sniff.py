"""What a model file is, read from its contents (never its suffix), without running any code it holds.

    identify(path) -> ModelFile(path, kind, detail)

- a zip written by torch: an AOTInductor package (`<name>/data/aotinductor/...`), an ExportedProgram
  (`torch.export.save`: `<name>/models/*.json`, no compiled code), TorchScript (`code/` and `constants.pkl`), or a
  `torch.save` pickle (`data.pkl`);
- ONNX: a protobuf ModelProto (field 1, `ir_version`, comes first); the ONNX Runtime format: a flatbuffer with the
  file identifier `ORTM`;
- a `torch.save` pickle (zip or legacy) is opened with `torch.load(weights_only=True)`, which builds only tensors
  and plain containers: a mapping of tensors is a state_dict (also one under a checkpoint's `state_dict` or `model`
  key); anything that needs a class of its own to unpickle is an eager pickle (`torch.save(model)`), named by the
  class that stopped it.
"""

from __future__ import annotations

import enum
import json
import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

ZIP_MAGIC = b"PK\x03\x04"
CHECKPOINT_KEYS = ("state_dict", "model")  # where a training checkpoint keeps its state_dict
_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


class ModelKind(enum.StrEnum):
    """What a model file holds. The first five are served; the rest are refused with what to do."""

    AOTI = "AOTInductor package"
    EXPORTED = "ExportedProgram"
    TORCHSCRIPT = "TorchScript module"
    ONNX = "ONNX model"
    ORT = "ONNX Runtime format model"
    STATE_DICT = "state_dict"
    EAGER_PICKLE = "eager pickle"
    UNKNOWN = "unknown file"


@dataclass(frozen=True)
class ModelFile:
    """A model file and what it is; `detail` says more (the class of an eager pickle, an AOTI package's device)."""

    path: Path
    kind: ModelKind
    detail: str = ""


def identify(path: Path) -> ModelFile:
    """What `path` holds (see the module docstring). Reads the file; runs none of its code."""
    head = path.read_bytes()[:16] if path.is_file() else b""
    if head.startswith(ZIP_MAGIC):
        return _identify_zip(path)
    if head[4:8] == b"ORTM":
        return ModelFile(path, ModelKind.ORT)
    if _looks_like_onnx(head):
        return ModelFile(path, ModelKind.ONNX)
    if head[:1] == b"\x80":  # a pickle protocol marker: torch.save's legacy (non-zip) format
        return _identify_pickle(path)
    return ModelFile(path, ModelKind.UNKNOWN, f"first bytes {head[:8]!r}")


def _looks_like_onnx(head: bytes) -> bool:
    """A ModelProto starts with field 1 (ir_version, a varint: tag 0x08) of a small value."""
    return len(head) >= 3 and head[0] == 0x08 and 1 <= head[1] <= 64


def _identify_zip(path: Path) -> ModelFile:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        if any("/data/aotinductor/" in name for name in names):
            return ModelFile(path, ModelKind.AOTI, aoti_metadata(archive).get("AOTI_DEVICE_KEY", ""))
    if any(re.search(r"/models/[^/]+\.json$", name) for name in names):
        return ModelFile(path, ModelKind.EXPORTED)
    if any(name.endswith("/constants.pkl") or "/code/" in name for name in names):
        return ModelFile(path, ModelKind.TORCHSCRIPT)
    if any(name.endswith("/data.pkl") for name in names):
        return _identify_pickle(path)
    return ModelFile(path, ModelKind.UNKNOWN, "a zip file that torch did not write")


def aoti_metadata(archive: zipfile.ZipFile) -> dict[str, str]:
    """The compile-time facts an AOTInductor package records (`AOTI_DEVICE_KEY`: cpu | cuda, `AOTI_CPU_ISA`,
    ...), from its wrapper's metadata JSON; empty when it has none."""
    for name in archive.namelist():
        if "/data/aotinductor/" in name and name.endswith("wrapper_metadata.json"):
            return {str(k): str(v) for k, v in json.loads(archive.read(name)).items()}
    return {}


def _identify_pickle(path: Path) -> ModelFile:
    try:
        content = torch.load(str(path), map_location="cpu", weights_only=True, mmap=_is_zip(path))
    except pickle.UnpicklingError as exc:
        found = _UNSUPPORTED_GLOBAL.search(str(exc))
        return ModelFile(path, ModelKind.EAGER_PICKLE, f"class {found.group(1)}" if found else "")
    except (RuntimeError, EOFError, ValueError) as exc:
        return ModelFile(path, ModelKind.UNKNOWN, f"torch.load cannot read it ({str(exc).splitlines()[0]})")
    if state_dict_of(content) is not None:
        return ModelFile(path, ModelKind.STATE_DICT)
    return ModelFile(path, ModelKind.UNKNOWN, f"a torch.save pickle of a {type(content).__name__}")


def _is_zip(path: Path) -> bool:
    return zipfile.is_zipfile(path)


def state_dict_of(content: object) -> dict[str, torch.Tensor] | None:
    """The state_dict in what `torch.load(weights_only=True)` returned: a mapping of tensors, or one under a
    checkpoint's `state_dict` or `model` key; None when there is none."""
    if isinstance(content, Mapping):
        for key in CHECKPOINT_KEYS:
            inner = content.get(key)
            if _is_state_dict(inner):
                return dict(inner)
        if _is_state_dict(content):
            return dict(content)
    return None


def _is_state_dict(value: object) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())
