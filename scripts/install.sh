#!/usr/bin/env bash
# `make install` (the .venv/.installed step): create .venv if missing and install the project with every extra
# (pyproject.toml: base clients + serve, train, bench, dev; exact pins). Make reruns this when pyproject.toml is
# newer than the .venv/.installed stamp; the gRPC stubs are a separate make step (scripts/gen_grpc.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
# torch==2.13.0 resolves to the CPU wheel on disk; the rest comes from the package index.
.venv/bin/python -m pip install --quiet -e ".[all]"
rm -f .venv/.installed-*  # the hash stamps of the former install.sh
touch .venv/.installed
