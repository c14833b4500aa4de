"""The largest modules, functions and classes of the shipped and example code, in lines (an AST count).

    .venv/bin/python scripts/code_sizes.py [ROOT] [--top N]

Counts handlers/, toolkit/ (not the generated grpc_gen), examples/ and scripts/: a module's lines, and each
function's and class's span from its `def`/`class` line to its last line, docstrings included.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

TREES = ("handlers", "toolkit", "examples", "scripts")


def sizes(root: Path) -> dict[str, list[tuple[int, str]]]:
    """'modules', 'functions', 'classes' -> (lines, where), largest first."""
    found: dict[str, list[tuple[int, str]]] = {"modules": [], "functions": [], "classes": []}
    for path in sorted(p for tree in TREES for p in (root / tree).rglob("*.py") if "grpc_gen" not in p.parts):
        rel, text = path.relative_to(root), path.read_text(encoding="utf-8")
        found["modules"].append((len(text.splitlines()), str(rel)))
        for node in ast.walk(ast.parse(text)):
            kind = "classes" if isinstance(node, ast.ClassDef) else "functions"
            if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                found[kind].append((node.end_lineno - node.lineno + 1, f"{rel}:{node.lineno} {node.name}"))
    return {kind: sorted(items, reverse=True) for kind, items in found.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", nargs="?", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--top", type=int, default=3)
    args = parser.parse_args()
    for kind, items in sizes(args.root).items():
        print(f"{kind}: " + "; ".join(f"{where} ({lines})" for lines, where in items[: args.top]))


if __name__ == "__main__":
    main()
