#!/usr/bin/env bash
# Keeps jwt-proxy running across zero-downtime upgrades; used by `make run` and as the
# container entrypoint (under tini). Signals:
#   HUP       graceful upgrade: check the config, start `jwt-proxy -u` (it takes the listening
#             sockets over the upgrade socket), then QUIT the old process, which drains and exits.
#   TERM/INT  passed to the current jwt-proxy (TERM: drain then exit; INT: fast stop).
# The supervisor exits when the current jwt-proxy exits without being replaced.
# Settings (environment): JWT_PROXY_BIN (jwt-proxy), JWT_PROXY_CONF (conf/jwt-proxy.yaml),
# SUPERVISOR_PID_FILE (where this script records its own pid; unset: not recorded).
set -u
BIN=${JWT_PROXY_BIN:-jwt-proxy}
CONF=${JWT_PROXY_CONF:-conf/jwt-proxy.yaml}
# The upgrade socket path is a Pingora setting in the YAML file.
SOCK=$(sed -n 's/^upgrade_sock:[[:space:]]*\([^[:space:]#]*\).*/\1/p' "$CONF" | head -n 1)
SOCK=${SOCK:-/tmp/jwt-proxy-upgrade.sock}

log() { echo "supervise: $*" >&2; }

[ -n "${SUPERVISOR_PID_FILE:-}" ] && echo $$ > "$SUPERVISOR_PID_FILE"

"$BIN" -c "$CONF" &
current=$!
upgrading=0

upgrade() {
    upgrading=1
    if ! "$BIN" -t -c "$CONF" >/dev/null; then
        log "new configuration is invalid; keeping pid $current"
        upgrading=0
        return
    fi
    rm -f "$SOCK"
    "$BIN" -u -c "$CONF" &
    local new=$!
    # The new process waits (about 6 s) on the upgrade socket for the old one's sockets.
    for _ in $(seq 1 50); do
        [ -S "$SOCK" ] && break
        kill -0 "$new" 2>/dev/null || break
        sleep 0.1
    done
    if ! kill -0 "$new" 2>/dev/null || [ ! -S "$SOCK" ]; then
        log "new process did not start; keeping pid $current"
        kill "$new" 2>/dev/null
        upgrading=0
        return
    fi
    log "upgrading: pid $current hands over to pid $new"
    kill -QUIT "$current"
    current=$new
    upgrading=0
}

trap upgrade HUP
trap 'kill -TERM "$current" 2>/dev/null' TERM
trap 'kill -INT "$current" 2>/dev/null' INT

# `wait` returns early on every trapped signal; keep waiting while the current process lives.
while kill -0 "$current" 2>/dev/null || [ "$upgrading" = 1 ]; do
    wait "$current" 2>/dev/null
done
wait
