#!/usr/bin/env bash
# `make test` and `make test-e2e`, after make has rebuilt whatever is stale: check the programs the e2e tier
# needs (Java 17 for TorchServe; wrk for the bench smoke test and prometheus for the observability tests,
# installed from the Debian packages when root),
# then run pytest on the given paths. Its exit status is pytest's. (`make test-unit` and `make test-integration`
# call pytest directly: they need neither.)
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m toolkit.prereqs --quiet java
bash scripts/require_wrk.sh
if ! command -v prometheus >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing prometheus (the observability e2e tests run a real one) from the Debian packages"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; }
fi
exec .venv/bin/python -m pytest "$@"
