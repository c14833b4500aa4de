"""The tiers are the folders of tests/: tests/conftest.py marks each test with its folder's name."""

from __future__ import annotations

import pytest

from tests.paths import ROOT

TESTS = ROOT / "tests"


def test_every_tier_folder_is_a_declared_marker(request: pytest.FixtureRequest) -> None:
    declared = {line.split(":", 1)[0] for line in request.config.getini("markers")}
    tiers = {p.parent.name for p in TESTS.glob("*/test_*.py")}
    assert tiers == {"unit", "integration", "manifests", "e2e", "cluster", "container"}
    assert tiers <= declared, tiers - declared


def test_a_test_carries_the_marker_of_its_folder_only(request: pytest.FixtureRequest) -> None:
    marks = {m.name for m in request.node.iter_markers()}
    assert "unit" in marks
    assert not marks & {"integration", "manifests", "e2e", "cluster", "container"}, marks
