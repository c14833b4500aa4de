"""Test tiers by folder: each test is marked with the name of its tier's folder (tests/unit -> `unit`, tests/e2e
-> `e2e`, ...), so `-m "not e2e"` selects across tiers; the markers are declared in pyproject.toml, and
--strict-markers refuses a new tier folder until it is declared there. Shared helpers live in tests/paths.py,
tests/payloads.py and tests/heldout.py, never here."""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = item.path.resolve().relative_to(TESTS).parts
        if len(parts) > 1:
            item.add_marker(getattr(pytest.mark, parts[0]))
