"""Check KServe manifests against KServe's own API models, run inside the KServe client venv (.venv-kserve):

    .venv-kserve/bin/python tests/manifests/kserve_models_check.py deploy/kserve/*.yaml

KServe's Python package (`kserve`, pinned in tests/e2e/kserve-client-requirements.txt) ships one model class per
CRD type (V1beta1InferenceService, V1alpha1ServingRuntime, ...), generated from the same OpenAPI definitions as
the CRDs, each with `openapi_types` (attribute -> type) and `attribute_map` (attribute -> JSON key); Kubernetes
types (V1Container, ...) come from the `kubernetes` client the same way. Every field of a manifest is looked up
in that tree: a key no model declares, or a value of the wrong JSON type, is printed as `<file>: <path>: <why>`
and the exit status is 1. Output on success: one `ok <file> <kind>` line per document.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import kserve.models
import kubernetes.client.models
import yaml

KINDS = {"InferenceService": "V1beta1InferenceService", "ServingRuntime": "V1alpha1ServingRuntime"}
SCALARS = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object, "datetime": str}


def model_class(name: str) -> type | None:
    return getattr(kserve.models, name, None) or getattr(kubernetes.client.models, name, None)


def check(value: object, type_name: str, path: str) -> list[str]:
    """Problems of `value` as an instance of the OpenAPI type `type_name` (e.g. 'list[V1Container]')."""
    if (inner := re.fullmatch(r"list\[(.+)\]", type_name)) is not None:
        if not isinstance(value, list):
            return [f"{path}: expected a list for {type_name}"]
        return [p for i, item in enumerate(value) for p in check(item, inner[1], f"{path}[{i}]")]
    if (inner := re.fullmatch(r"dict\(str, (.+)\)", type_name)) is not None:
        if not isinstance(value, dict):
            return [f"{path}: expected a mapping for {type_name}"]
        return [p for k, v in value.items() for p in check(v, inner[1], f"{path}.{k}")]
    if type_name in SCALARS:
        ok = isinstance(value, SCALARS[type_name]) and not (type_name == "int" and isinstance(value, bool))
        return [] if ok else [f"{path}: {value!r} is not {type_name}"]
    cls = model_class(type_name)
    if cls is None:  # an int-or-string and the like: kept as the API server keeps it
        return []
    if not isinstance(value, dict):
        return [f"{path}: expected an object ({type_name})"]
    by_key = {json_key: attr for attr, json_key in cls.attribute_map.items()}
    problems = [f"{path}.{key}: no such field in {type_name}" for key in value if key not in by_key]
    for key, item in value.items():
        if key in by_key:
            problems += check(item, cls.openapi_types[by_key[key]], f"{path}.{key}")
    return problems


def main(paths: list[str]) -> int:
    failed = False
    for path in paths:
        for doc in yaml.safe_load_all(Path(path).read_text(encoding="utf-8")):
            if not doc:
                continue
            problems = check(doc, KINDS[doc["kind"]], doc["kind"])
            for problem in problems:
                print(f"{path}: {problem}")
            failed |= bool(problems)
            if not problems:
                print(f"ok {path} {doc['kind']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
