#!/usr/bin/env bash
# Zero-downtime reload of a jwt-proxy run by scripts/supervise.sh (`make run`, the container):
# signal the supervisor, then wait until a new jwt-proxy owns the listeners (its pid is in the
# pid file) and the old one has drained and exited. Exit 1 if that does not happen.
set -euo pipefail
SUP_PID_FILE=${SUPERVISOR_PID_FILE:-run/supervisor.pid}
CONF=${JWT_PROXY_CONF:-conf/jwt-proxy.yaml}
PID_FILE=$(sed -n 's/^pid_file:[[:space:]]*\([^[:space:]#]*\).*/\1/p' "$CONF" | head -n 1)
PID_FILE=${PID_FILE:-/tmp/jwt-proxy.pid}

sup=$(cat "$SUP_PID_FILE" 2>/dev/null || true)
if [ -z "$sup" ] || ! kill -0 "$sup" 2>/dev/null; then
    echo "reload: no running supervisor (pid file $SUP_PID_FILE); start it with 'make run'" >&2
    exit 1
fi
old=$(cat "$PID_FILE")
kill -HUP "$sup"
for _ in $(seq 1 150); do
    new=$(cat "$PID_FILE" 2>/dev/null || true)
    [ -n "$new" ] && [ "$new" != "$old" ] && break
    sleep 0.1
done
if [ "${new:-$old}" = "$old" ]; then
    echo "reload: no new process took over (still pid $old); see the proxy's log" >&2
    exit 1
fi
echo "reload: pid $new took over; pid $old is draining"
for _ in $(seq 1 600); do
    kill -0 "$old" 2>/dev/null || { echo "reload: pid $old exited; done"; exit 0; }
    sleep 0.1
done
echo "reload: pid $old still running after 60 s" >&2
exit 1
