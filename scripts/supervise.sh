#!/usr/bin/env bash
# Keeps jwt-proxy running across zero-downtime upgrades; used by `make run` and as the
# container entrypoint (under tini). Signals:
#   HUP       graceful upgrade: check the config, start `jwt-proxy -u` (it takes the listening
#             sockets over the upgrade socket), QUIT the old process, which drains and exits.
#             One upgrade at a time: HUPs during an upgrade queue exactly one more.
#   TERM/INT  passed to every jwt-proxy (the current one and any still draining); the
#             supervisor exits once all have exited, with the current one's exit status.
# An upgrade is done when the new process serves (its pid is in the pid file, written once its
# listeners are ready) and the old one has exited. If the new process dies before the hand-over,
# the old one keeps serving; if it dies after (or the current process crashes), a fresh one is
# started (at most 5 times a minute). The supervisor exits when the current jwt-proxy exits on
# its own with status 0.
# Upgrades are counted in "<pid_file>.upgrades": "STARTED FINISHED RESULT", RESULT being the
# last finished one's, ok or failed (scripts/reload.sh reads it). The paths come from the
# binary (`jwt-proxy --print-paths`).
# Settings (environment): JWT_PROXY_BIN (jwt-proxy), JWT_PROXY_CONF (conf/jwt-proxy.yaml),
# SUPERVISOR_PID_FILE (where this script records its own pid; unset: not recorded),
# START_ERROR_PAUSE_SECS (default 0; the image sets 10): see refused() below.
set -u
BIN=${JWT_PROXY_BIN:-jwt-proxy}
CONF=${JWT_PROXY_CONF:-conf/jwt-proxy.yaml}
PAUSE=${START_ERROR_PAUSE_SECS:-0}

log() { echo "supervise: $*" >&2; }
# Sleep that a trapped signal cuts short.
nap() {
    sleep "$1" &
    local s=$!
    wait "$s"
    kill "$s" 2>/dev/null
}

# A refused configuration (jwt-proxy exits 2; its message is above) is not retried: nothing
# changes until someone fixes it. The exit waits PAUSE seconds (a TERM ends the wait), so that a
# container restart policy without back-off (podman's) does not restart it in a tight loop.
refused() {
    if [ "$PAUSE" -gt 0 ] 2>/dev/null && [ -z "${stopping:-}" ]; then
        log "jwt-proxy refused its configuration (see above); exiting in $PAUSE s"
        nap "$PAUSE"
    else
        log "jwt-proxy refused its configuration (see above)"
    fi
    exit 2
}

# Sets PID_FILE, SOCK and SIGNING ("KID FINGERPRINT" of a fixed signing key, empty for a keyset)
# as the binary reads the config (defaults and environment included).
paths() {
    local out
    out=$("$BIN" --print-paths -c "$CONF") || return 1
    PID_FILE=$(sed -n 's/^pid_file=//p' <<<"$out")
    SOCK=$(sed -n 's/^upgrade_sock=//p' <<<"$out")
    SIGNING=$(sed -n 's/^signing_key=//p' <<<"$out")
}
paths || refused
serving_signing=$SIGNING # what the serving process signs with
[ -n "${SUPERVISOR_PID_FILE:-}" ] && echo $$ >"$SUPERVISOR_PID_FILE"

children=()   # every jwt-proxy started that may still run
pending=0     # a HUP arrived: one upgrade to do
stopping=     # TERM or INT arrived
config_refused= # the current jwt-proxy exited 2: its configuration was refused
started=0 finished=0 result=none # upgrades started and finished, the last one's result

alive() { kill -0 "$1" 2>/dev/null; }
serving() { alive "$1" && [ "$(cat "$PID_FILE" 2>/dev/null)" = "$1" ]; }
gone() { ! alive "$1"; }
sock_or_dead() { [ -S "$SOCK" ] || ! alive "$1"; }
# until_ok SECONDS CMD...: run CMD every 0.1 s until it succeeds (0), or a stop arrives or
# SECONDS pass (1).
until_ok() {
    local tries=$(($1 * 10))
    shift
    while [ -z "$stopping" ] && ((tries-- > 0)); do
        "$@" && return 0
        nap 0.1
    done
    return 1
}
stop() {
    stopping=$1
    local p
    for p in "${children[@]}"; do kill "-$1" "$p" 2>/dev/null; done
}
# Forget the children that have exited (bash keeps their exit status for `wait`).
prune() {
    local p live=()
    for p in "${children[@]}"; do alive "$p" && live+=("$p"); done
    children=("${live[@]}")
}
# (Quietly: at start jwt-proxy may not have made the pid file's directory yet, and then there
# is no earlier state file to replace either.)
state() {
    { echo "$started $finished $result" >"$PID_FILE.upgrades.tmp"; } 2>/dev/null &&
        mv "$PID_FILE.upgrades.tmp" "$PID_FILE.upgrades"
}
# finish ok|failed MESSAGE: record the outcome of the upgrade in progress.
finish() {
    [ -n "$stopping" ] && set -- failed "stopped by SIG$stopping during the upgrade"
    finished=$started result=$1
    log "upgrade $started $1: $2"
    state
}

upgrade() {
    local old=$current new
    prune
    started=$((started + 1))
    state
    if ! paths || ! "$BIN" -t -c "$CONF" >/dev/null; then
        finish failed "the new configuration is invalid; pid $old keeps serving"
        return
    fi
    # Another kid over the same key: the new key was never read (a container's bind mount still
    # shows the old file; an environment variable shadows the file's key). Tokens would carry the
    # new kid signed with the old key, which verifiers that pick keys by kid reject. (A first kid
    # for a key that had none is fine.)
    if [ -n "$SIGNING" ] && [ -n "$serving_signing" ] && [ "${serving_signing% *}" != - ] &&
        [ "${SIGNING% *}" != "${serving_signing% *}" ] && [ "${SIGNING#* }" = "${serving_signing#* }" ]; then
        finish failed "the kid changes (${serving_signing% *} to ${SIGNING% *}) but the signing key does not (fingerprint ${SIGNING#* }): the new key was not read (in a container, write it into the mounted key file itself, not by renaming); pid $old keeps serving"
        return
    fi
    if ! until_ok 15 serving "$old"; then
        finish failed "pid $old is not serving, so it cannot hand over"
        return
    fi
    rm -f "$SOCK"
    "$BIN" -u -c "$CONF" &
    new=$!
    children+=("$new")
    # The new process waits (about 6 s) on the upgrade socket for the old one's listeners.
    until_ok 10 sock_or_dead "$new"
    if [ -n "$stopping" ] || ! alive "$new" || [ ! -S "$SOCK" ]; then
        kill -TERM "$new" 2>/dev/null
        finish failed "new pid $new did not start; pid $old keeps serving"
        return
    fi
    log "upgrading: pid $old hands over to pid $new"
    kill -QUIT "$old"
    # Pingora has no way back: from here the old process drains and exits.
    current=$new
    serving_signing=$SIGNING
    if ! until_ok 15 serving "$new"; then
        finish failed "new pid $new did not take over; old pid $old is shutting down"
        return
    fi
    if ! until_ok 300 gone "$old"; then
        finish failed "pid $new serves, but old pid $old is still running"
        return
    fi
    finish ok "pid $new serves; pid $old has exited"
}

trap 'pending=1' HUP
trap 'stop TERM' TERM
trap 'stop INT' INT

"$BIN" -c "$CONF" &
current=$!
children+=("$current")
# A state file left by an earlier supervisor would make reload.sh wait for its count.
state
restarts=()   # times of restarts after a crash, the last minute's

while [ -z "$stopping" ]; do
    if ! alive "$current"; then
        # It exited on its own. A clean exit (status 0: told to stop directly) ends the
        # supervisor; a crash (a new process dying right after an upgrade's hand-over, say)
        # starts a fresh one, at most 5 times a minute, once the old listeners are released.
        wait "$current" 2>/dev/null
        code=$?
        now=$(date +%s)
        recent=()
        for t in "${restarts[@]}"; do [ $((now - t)) -lt 60 ] && recent+=("$t"); done
        restarts=("${recent[@]}")
        if [ "$code" = 0 ] || [ "${#restarts[@]}" -ge 5 ]; then
            break
        fi
        [ "$code" = 2 ] && { config_refused=1; break; }
        [ -n "$stopping" ] && break
        log "pid $current exited with status $code; starting a new jwt-proxy"
        restarts+=("$now")
        paths 2>/dev/null && serving_signing=$SIGNING
        "$BIN" -c "$CONF" &
        current=$!
        children+=("$current")
        # A TERM/INT that came while it was being started has not reached it yet.
        [ -n "$stopping" ] && kill "-$stopping" "$current" 2>/dev/null
        continue
    fi
    if [ "$pending" = 1 ]; then
        pending=0
        upgrade
    else
        nap 1
    fi
done

# Stopping, or the current process exited: wait for every jwt-proxy. `wait` returns early when a
# trapped signal arrives, so keep waiting while each one lives.
for p in "${children[@]}"; do
    while alive "$p"; do wait "$p" 2>/dev/null; done
done
wait "$current" 2>/dev/null
status=$?
if [ -n "$config_refused" ]; then refused; fi
exit "$status"
