"""Paths of the project and of its built example models, and the check that a build output a tier needs exists."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolkit.paths import BUILD_MODELS as BUILD
from toolkit.paths import MODEL_STORE as STORE
from toolkit.paths import ROOT

__all__ = ["BUILD", "ROOT", "STORE", "require_built"]


def require_built(path: Path, how: str) -> Path:
    """Fail (not skip) when a build output the test tier depends on is missing."""
    if not path.exists():
        pytest.fail(f"{path.relative_to(ROOT)} is missing: run `{how}` first (make test does)")
    return path
