#!/usr/bin/env bash
# The test command: lint, type-check, then the whole suite in parallel.
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check .
mypy
# --dist loadgroup keeps tests that share one heavy resource (a QEMU guest, a docker build)
# on one worker; the rest spread over both cores.
exec python3 -m pytest -n 2 --dist loadgroup "$@"
