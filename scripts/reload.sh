#!/usr/bin/env bash
# Zero-downtime reload of a jwt-proxy run by scripts/supervise.sh (`make run`, the container):
# signal the supervisor, then wait until the upgrade this HUP asked for is complete: a new
# jwt-proxy serves (its pid is in the pid file) and the old one has exited. Exit 1 otherwise.
# Settings (environment): SUPERVISOR_PID_FILE (run/supervisor.pid), JWT_PROXY_BIN (jwt-proxy),
# JWT_PROXY_CONF (conf/jwt-proxy.yaml); the paths come from `jwt-proxy --print-paths`.
set -euo pipefail
SUP_PID_FILE=${SUPERVISOR_PID_FILE:-run/supervisor.pid}
BIN=${JWT_PROXY_BIN:-jwt-proxy}
CONF=${JWT_PROXY_CONF:-conf/jwt-proxy.yaml}

fail() {
    echo "reload: $*" >&2
    exit 1
}
paths=$("$BIN" --print-paths -c "$CONF") || fail "cannot read the configuration (see above)"
PID_FILE=$(sed -n 's/^pid_file=//p' <<<"$paths")
# "STARTED FINISHED RESULT" (the result of the last finished upgrade), from the supervisor.
STATE=$PID_FILE.upgrades

sup=$(cat "$SUP_PID_FILE" 2>/dev/null || true)
if [ -z "$sup" ] || ! kill -0 "$sup" 2>/dev/null; then
    fail "no running supervisor (pid file $SUP_PID_FILE); start it with 'make run'"
fi
old=$(cat "$PID_FILE" 2>/dev/null || true)
# Upgrades already started do not count: ours is the first to start after this HUP.
read -r started _ _ 2>/dev/null <"$STATE" || started=0
want=$((started + 1))
kill -HUP "$sup"
# An upgrade in progress finishes first; each takes at most grace + shutdown timeout + ~20 s.
for _ in $(seq 1 3000); do
    read -r _ finished result 2>/dev/null <"$STATE" || finished=0
    [ "${finished:-0}" -ge "$want" ] && break
    kill -0 "$sup" 2>/dev/null || fail "the supervisor (pid $sup) exited"
    sleep 0.1
done
[ "${finished:-0}" -ge "$want" ] || fail "the upgrade did not finish within 300 s"
[ "$result" = ok ] || fail "the upgrade failed; pid $(cat "$PID_FILE") still serves (see the supervisor's log)"
new=$(cat "$PID_FILE")
kill -0 "$new" 2>/dev/null || fail "pid $new in $PID_FILE is not running"
if [ -n "$old" ] && kill -0 "$old" 2>/dev/null; then
    fail "old pid $old is still running"
fi
echo "reload: pid $new serves; pid ${old:-?} has exited"
