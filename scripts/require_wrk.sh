#!/usr/bin/env bash
# The benchmark's load generator is wrk (Debian package): install it when root, else stop with the command.
set -euo pipefail
command -v wrk >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing wrk (load generator) from the Debian packages"
  apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk; }
else
  echo "wrk not found: install it with: sudo apt-get install -y wrk" >&2
  exit 1
fi
