#!/usr/bin/env bash
# The fortunes demo model trains on Debian's fortunes database (/usr/share/games/fortunes/<topic>, packages
# fortunes and fortunes-min). Missing: install it when root (CI, a fresh machine), else stop with the command.
# Run by make before `build_models --only fortunes` (the Makefile's order-only prerequisite).
set -euo pipefail
DIR=/usr/share/games/fortunes
[ -f "$DIR/computers" ] && [ -f "$DIR/startrek" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's fortunes database (fortunes, fortunes-min) for the fortunes demo model"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fortunes fortunes-min >/dev/null 2>&1 \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fortunes fortunes-min; }
fi
[ -f "$DIR/computers" ] && [ -f "$DIR/startrek" ] && exit 0
echo "error: $DIR is missing Debian's fortunes database; install it: sudo apt-get install -y fortunes fortunes-min" >&2
exit 1
