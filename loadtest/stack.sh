# Sourced by the load-test scripts: start protected-echo and jwt-proxy on loopback unless a
# proxy already answers at TARGET_URL; `stack_stop` stops only what was started here.
BIN=${BIN:-target/release}
HTTP_PORT=${HTTP_PORT:-8080}
STATUS_PORT=${STATUS_PORT:-8081}
UPSTREAM_PORT=${UPSTREAM_PORT:-9000}
TARGET_URL=${TARGET_URL:-http://127.0.0.1:$HTTP_PORT/}
STARTED_PIDS=()

stack_up() {
    if "$BIN/jwt-post" --quiet "$TARGET_URL" >/dev/null 2>&1; then
        echo "using the proxy already running at $TARGET_URL"
        return
    fi
    echo "starting protected-echo on :$UPSTREAM_PORT and jwt-proxy on :$HTTP_PORT"
    "$BIN/protected-echo" --listen "127.0.0.1:$UPSTREAM_PORT" --no-verify --threads 1 >/dev/null 2>&1 &
    STARTED_PIDS+=($!)
    HTTP_PORT=$HTTP_PORT STATUS_PORT=$STATUS_PORT ACCESS_LOG=off RUST_LOG=warn JWT_DEMO_KEY=${JWT_DEMO_KEY:-true} \
      UPSTREAM_URL="http://127.0.0.1:$UPSTREAM_PORT/protected" "$BIN/jwt-proxy" -c conf/jwt-proxy.yaml &
    STARTED_PIDS+=($!)
    for _ in $(seq 1 100); do
        "$BIN/jwt-post" --quiet "$TARGET_URL" >/dev/null 2>&1 && return
        sleep 0.1
    done
    echo "the stack did not come up" >&2
    stack_stop
    exit 1
}

stack_stop() {
    for pid in "${STARTED_PIDS[@]}"; do kill -INT "$pid" 2>/dev/null; done
    for pid in "${STARTED_PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    STARTED_PIDS=()
}
