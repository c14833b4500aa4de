#!/usr/bin/env bash
# Create .venv with the pinned dependencies (pyproject.toml) and generate the gRPC stubs. Idempotent: a stamp
# of pyproject.toml's hash skips the pip step when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  # torch==2.13.0 resolves to the CPU wheel on disk; the rest comes from the package index.
  .venv/bin/python -m pip install --quiet -e ".[dev]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
.venv/bin/python scripts/gen_grpc.py
