#!/usr/bin/env bash
# The benchmark's load generator is wrk (Debian package), checked by `python -m toolkit.prereqs wrk`
# (toolkit.bench.loadgen.find_wrk). Missing: install it when root (CI), else stop with the command.
# Used by `make bench`, `make test` and `make test-e2e` only.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m toolkit.prereqs --quiet wrk 2>/dev/null && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing wrk (load generator) from the Debian packages"
  apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk; }
fi
exec .venv/bin/python -m toolkit.prereqs --quiet wrk
