"""Every package docstring of handlers/ and toolkit/ is an index of its folder: it names each module and
subpackage there, as `name.py`, `name/`, `` `name` `` or `package.name` (`__main__.py` also as
`python -m package`). The generated toolkit/client/grpc_gen is not checked (its parent names it)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.paths import ROOT

TOP_PACKAGES = ("handlers", "toolkit")
NOT_CHECKED = {ROOT / "toolkit" / "client" / "grpc_gen"}


def packages() -> list[Path]:
    found = []
    for top in TOP_PACKAGES:
        for init in sorted((ROOT / top).rglob("__init__.py")):
            if not any(init.parent == skip or skip in init.parents for skip in NOT_CHECKED):
                found.append(init.parent)
    return found


def members(package: Path) -> list[str]:
    """The modules (`name.py`) and subpackages (`name/`) of a package folder, `__init__.py` aside."""
    modules = [p.name for p in sorted(package.glob("*.py")) if p.name != "__init__.py"]
    subpackages = [f"{p.name}/" for p in sorted(package.iterdir()) if (p / "__init__.py").is_file()]
    return modules + subpackages


def dotted(package: Path) -> str:
    return ".".join(package.relative_to(ROOT).parts)


def named(docstring: str, package: str, member: str) -> bool:
    """Whether the docstring names `member` (`x.py` or `x/`) in one of the accepted forms."""
    stem = member.removesuffix(".py").removesuffix("/")
    forms = [re.escape(member), rf"`{re.escape(stem)}`", rf"\b{re.escape(package)}\.{re.escape(stem)}\b"]
    if stem == "__main__":
        forms.append(rf"python -m {re.escape(package)}\b")
    return any(re.search(rf"(?<![\w./]){form}", docstring) for form in forms)


@pytest.mark.parametrize("package", packages(), ids=dotted)
def test_package_docstring_names_every_module_of_its_folder(package: Path) -> None:
    docstring = ast.get_docstring(ast.parse((package / "__init__.py").read_text())) or ""
    missing = [m for m in members(package) if not named(docstring, dotted(package), m)]
    init = (package / "__init__.py").relative_to(ROOT)
    assert not missing, f"package {dotted(package)}: the docstring of {init} does not name {', '.join(missing)}"


def test_the_walk_covers_both_trees() -> None:
    found = {dotted(p) for p in packages()}
    assert {"handlers", "toolkit", "toolkit.server", "toolkit.bench.peers", "toolkit.engines.ray"} <= found
    assert "toolkit.client.grpc_gen" not in found


@pytest.mark.parametrize(("docstring", "member", "expected"), [
    ("    local.py   LocalServer", "local.py", True),
    ("`loadgen` (wrk runs)", "loadgen.py", True),
    ("    ray/   the Ray Serve engine", "ray/", True),
    ("one contract (`toolkit.server.health`)", "health.py", True),
    ("    python -m toolkit.server start|stop", "__main__.py", True),
    ("schema in handlers/config.py", "config.py", False),  # another folder's module
    ("reads the config file", "config.py", False),  # a bare word is prose, not an index entry
    ("toolkit.server.healthy", "health.py", False),
    ("python -m toolkit.serverless", "__main__.py", False),
])
def test_what_counts_as_naming_a_module(docstring: str, member: str, expected: bool) -> None:
    assert named(docstring, "toolkit.server", member) is expected
