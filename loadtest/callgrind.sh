#!/usr/bin/env bash
# Instructions per request (valgrind callgrind: counts instructions, so it is repeatable on a
# noisy machine) of jwt-proxy (one worker thread; access log off, then on into /dev/null) and of
# the bare Pingora pass-through and of HAProxy minting the same token (loadtest/peers/
# haproxy-jwt.cfg), for the same N keep-alive POSTs against an nginx upstream; then jwt-proxy's
# own functions (access log on). Settings: REQUESTS (2000).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${REQUESTS:-2000}
source loadtest/bench-env.sh
need valgrind valgrind
need nginx nginx-light
need haproxy haproxy
cargo build --release --quiet --bins --example passthrough
dir=$(mktemp -d)
trap 'pkill -f "$dir" 2>/dev/null || true; sleep 1; rm -rf "$dir"' EXIT
UP=19300
upstream_conf "$dir" "$UP"
proxy_conf "$dir" 19301 19311 "$UP" false
cat > "$dir/client.py" <<'PY'
import http.client, sys, threading
port, path, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
def run(k):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    for _ in range(k):
        c.request("POST", path, body=b'{"hello":"world"}', headers={"x-user": "cg", "content-type": "application/json"})
        r = c.getresponse(); r.read(); assert r.status == 200, r.status
ts = [threading.Thread(target=run, args=(n // 4,)) for _ in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
PY
nginx -c "$dir/upstream.conf" -e "$dir/up.err" &
sleep 0.5
measure() { # name port path -- command...
    local name=$1 port=$2 path=$3; shift 4
    ( cd "$dir" && exec valgrind --tool=callgrind --callgrind-out-file="$dir/cg.$name.%p" "$@" ) >/dev/null 2>&1 &
    local vpid=$!
    for _ in $(seq 1 300); do python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null && break; sleep 0.1; done
    python3 "$dir/client.py" "$port" "$path" 200          # warm-up, not counted
    callgrind_control -z "$vpid" >/dev/null
    python3 "$dir/client.py" "$port" "$path" "$N"
    callgrind_control -d "$vpid" >/dev/null
    sleep 1
    kill -INT "$vpid"; wait "$vpid" 2>/dev/null || true
    local total; total=$(awk '/^summary:/ {print $2}' "$dir"/cg."$name".*.1)
    echo "$name $total"
}
jwt=$(unset_proxy_env; export RUST_LOG=error
      measure jwt 19301 / -- "$PWD/target/release/jwt-proxy" -c "$dir/jwt-proxy.yaml")
jwtlog=$(unset_proxy_env; export RUST_LOG=error ACCESS_LOG=stdout
      measure jwtlog 19301 / -- "$PWD/target/release/jwt-proxy" -c "$dir/jwt-proxy.yaml")
bare=$(export UPSTREAM=127.0.0.1:$UP LISTEN=127.0.0.1:19302 WORK_STEALING=false
       measure bare 19302 /protected -- "$PWD/target/release/examples/passthrough")
hap=$(export HTTP_PORT=19303 UPSTREAM_ADDR=127.0.0.1:$UP JWT_KEY_B64=$(base64 -w0 < conf/demo-secret.txt)
      measure hap 19303 / -- haproxy -db -f "$PWD/loadtest/peers/haproxy-jwt.cfg")
echo
echo "instructions per request over $N POSTs (callgrind, one worker thread):"
awk -v j="${jwt#* }" -v l="${jwtlog#* }" -v b="${bare#* }" -v n="$N" 'BEGIN {
  printf "  jwt-proxy %.0f (access log on: %.0f), bare Pingora %.0f; ratios to bare %.2f (%.2f)\n", j/n, l/n, b/n, j/b, l/b }'
awk -v h="${hap#* }" -v l="${jwtlog#* }" -v b="${bare#* }" -v n="$N" 'BEGIN {
  printf "  HAProxy minting HS512 %.0f; jwt-proxy (log on) / HAProxy %.2f, bare Pingora / HAProxy %.2f\n", h/n, l/h, b/h }'
echo "jwt-proxy's own code (access log on), inclusive, per request:"
callgrind_annotate --inclusive=yes "$dir"/cg.jwtlog.*.1 2>/dev/null \
  | grep -E "^ *[0-9,]+ \(" | grep -E "/work/main/src/|sha512::compress512 $|sha512::compress512 \[" \
  | sed -E 's/^ *([0-9,]+) \([^)]*\) +[^:]*:(.*)$/\1\t\2/; s/ \[[^]]*\]$//' \
  | awk -F'\t' -v n="$N" '{gsub(",", "", $1); printf "  %8.0f  %s\n", $1/n, substr($2, 1, 110)}' | head -16
