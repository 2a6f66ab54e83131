#!/usr/bin/env bash
# The same load with oha: starts the local stack if none is running, prints requests/s and
# latency percentiles, stops what it started. Settings: REQUESTS (default 50000),
# CONNECTIONS (default 32), TARGET_URL.
set -euo pipefail
cd "$(dirname "$0")/.."
source loadtest/stack.sh
OHA=${OHA:-$(command -v oha || echo "$HOME/.cargo/bin/oha")}
if [ ! -x "$OHA" ]; then
    echo "installing oha (cargo install oha --locked)"
    cargo install oha --locked
    OHA=$HOME/.cargo/bin/oha
fi
stack_up
trap stack_stop EXIT
"$OHA" --no-tui -n "${REQUESTS:-50000}" -c "${CONNECTIONS:-32}" -m POST \
  -H 'content-type: application/json' -H 'x-user: oha' -d '{"hello":"world"}' "$TARGET_URL"
