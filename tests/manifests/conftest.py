"""Manifest-tier fixtures: the deploy/ manifests, loaded (no cluster, no server, no model build)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from toolkit.paths import ROOT

DEPLOY = ROOT / "deploy"
MANIFEST_DIRS = (DEPLOY / "kserve", DEPLOY / "k8s")


def load_docs(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def all_manifests() -> list[tuple[Path, dict]]:
    paths = [path for folder in MANIFEST_DIRS for path in sorted(folder.glob("*.yaml"))]
    return [(path, doc) for path in paths for doc in load_docs(path)]


@pytest.fixture(scope="session")
def manifests() -> dict[str, dict]:
    """Every manifest of deploy/kserve and deploy/k8s by '<folder>/<file>:<kind>'."""
    return {f"{path.parent.name}/{path.name}:{doc['kind']}": doc for path, doc in all_manifests()}
