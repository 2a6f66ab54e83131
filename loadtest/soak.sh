#!/usr/bin/env bash
# Soak run: REQUESTS (default 1,000,000) POSTs at CONNECTIONS (default 64) keep-alive
# connections through a fresh jwt-proxy to protected-echo (--track-jti), sampling the proxy's
# RSS every second. Prints RSS after warm-up, peak and at the end, errors, and jti uniqueness
# as counted by the upstream; exits 1 if any request failed, any jti repeated, or memory did
# not plateau (end more than 10% above the post-warm-up figure). Outside `make test`.
# Settings: REQUESTS, CONNECTIONS, WARMUP_SECS (default 20), OUT (default target/soak).
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${REQUESTS:-1000000}
CONNECTIONS=${CONNECTIONS:-64}
WARMUP_SECS=${WARMUP_SECS:-20}
OUT=${OUT:-target/soak}
BIN=target/release
OHA=${OHA:-$(command -v oha || echo "$HOME/.cargo/bin/oha")}
[ -x "$OHA" ] || { echo "installing oha"; cargo install oha --locked; OHA=$HOME/.cargo/bin/oha; }
cargo build --release --bins --quiet
mkdir -p "$OUT"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port); HTTP=$(free_port); STATUS=$(free_port)

"$BIN/protected-echo" --listen "127.0.0.1:$UP" --no-verify --track-jti --threads 1 >/dev/null 2>&1 &
ECHO_PID=$!
env -u JWT_SECRET -u JWT_SECRET_FILE JWT_DEMO_KEY=true LISTEN_ADDR=127.0.0.1 HTTP_PORT=$HTTP STATUS_PORT=$STATUS \
  ACCESS_LOG=off RUST_LOG=warn UPSTREAM_URL="http://127.0.0.1:$UP/protected" \
  "$BIN/jwt-proxy" -c conf/jwt-proxy.yaml >"$OUT/proxy.log" 2>&1 &
PROXY_PID=$!
SAMPLER_PID=
cleanup() {
    [ -n "$SAMPLER_PID" ] && kill "$SAMPLER_PID" 2>/dev/null
    kill -INT "$PROXY_PID" "$ECHO_PID" 2>/dev/null || true
    wait "$PROXY_PID" "$ECHO_PID" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$STATUS/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done

# RSS of the proxy, every second: seconds since start, KiB.
: >"$OUT/rss.csv"
(
    t=0
    while kill -0 "$PROXY_PID" 2>/dev/null; do
        rss=$(awk '/^VmRSS/ {print $2}' "/proc/$PROXY_PID/status" 2>/dev/null || true)
        [ -n "$rss" ] && echo "$t,$rss" >>"$OUT/rss.csv"
        sleep 1
        t=$((t + 1))
    done
) &
SAMPLER_PID=$!

echo "soak: $REQUESTS requests at $CONNECTIONS connections -> jwt-proxy :$HTTP -> protected-echo :$UP"
START=$(date +%s)
"$OHA" --no-tui -n "$REQUESTS" -c "$CONNECTIONS" -m POST --output-format json -o "$OUT/oha.json" \
  -H 'content-type: application/json' -H 'x-user: soak' -d '{"hello":"world"}' \
  "http://127.0.0.1:$HTTP/"
ELAPSED=$(( $(date +%s) - START ))
sleep 2 # one more RSS sample after the load
curl -sf "http://127.0.0.1:$UP/stats" >"$OUT/echo-stats.json"
curl -sf "http://127.0.0.1:$STATUS/status.json" >"$OUT/status.json"

python3 - "$OUT" "$REQUESTS" "$WARMUP_SECS" "$ELAPSED" <<'PY'
import json, sys
out, requests, warmup, elapsed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
oha = json.load(open(f"{out}/oha.json"))
echo = json.load(open(f"{out}/echo-stats.json"))
status = json.load(open(f"{out}/status.json"))
rss = [tuple(map(int, l.split(","))) for l in open(f"{out}/rss.csv") if l.strip()]
codes = {str(k): v for k, v in oha.get("statusCodeDistribution", {}).items()}
errors = sum(oha.get("errorDistribution", {}).values()) + sum(v for k, v in codes.items() if k != "200")
after_warmup = next((kb for t, kb in rss if t >= warmup), rss[-1][1])
peak = max(kb for _, kb in rss)
end = rss[-1][1]
mib = lambda kb: f"{kb / 1024:.1f} MiB"
summary = oha.get("summary", {})
print(f"requests sent:        {requests:,} in {elapsed} s ({summary.get('requestsPerSec', 0):,.0f} req/s)")
print(f"status codes:         {codes}")
print(f"errors:               {errors}")
print(f"proxy requests_total: {status['requests_total']:,}  by_status: {status['by_status']}  in_flight: {status['in_flight']}")
print(f"upstream received:    {echo['received']:,}  distinct jti: {echo['jti_distinct']:,}  repeated: {echo['jti_duplicates']}  missing: {echo['jti_missing']}")
print(f"proxy RSS:            after {warmup} s warm-up {mib(after_warmup)}, peak {mib(peak)}, end {mib(end)} ({len(rss)} samples in {out}/rss.csv)")
lat = oha.get("latencyPercentiles", {})
if lat:
    print(f"latency:              p50 {lat.get('p50', 0)*1000:.2f} ms, p99 {lat.get('p99', 0)*1000:.2f} ms")
ok = (errors == 0 and codes.get("200") == requests and status["requests_total"] == requests
      and echo["received"] == requests and echo["jti_distinct"] == requests
      and echo["jti_duplicates"] == 0 and echo["jti_missing"] == 0
      and end <= after_warmup * 1.10)
print("soak:", "PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
PY
