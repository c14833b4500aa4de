"""TorchServe's archive manifest (`MAR-INF/MANIFEST.json`), as the handlers and the toolkit read it.

One home for the facts of the manifest that more than one reader needs: the version an archive gets when none
was given (torch-model-archiver's own default), and how a model's version is read from a manifest.
"""

from __future__ import annotations

from collections.abc import Mapping

DEFAULT_VERSION = "1.0"  # torch-model-archiver's `--version` default


def model_version(manifest: Mapping | None) -> str:
    """The `model.modelVersion` of a manifest, DEFAULT_VERSION when it names none."""
    return str(((manifest or {}).get("model") or {}).get("modelVersion") or DEFAULT_VERSION)
