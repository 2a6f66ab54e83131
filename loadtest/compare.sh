#!/usr/bin/env bash
# Side-by-side comparison, one run, same load (wrk, POST, keep-alive) against:
#   (a) the upstream directly, (b) jwt-proxy, (c) a bare Pingora pass-through (examples/
#   passthrough.rs, same dependencies), (d) nginx proxy_pass.
# The upstream is nginx answering a fixed small body (cheap, so it is never the bottleneck).
# Pinning on 2 cores: the proxy under test alone on CPU 0 (one worker thread / process);
# wrk and the upstream on CPU 1. For each: requests/s, p50/p99 latency, and the proxy process's
# CPU seconds per 1,000 requests (utime+stime from /proc/PID/stat), then the ratios.
# Settings: DURATION (10), CONNECTIONS (32), WORK_STEALING (false).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
CONNS=${CONNECTIONS:-32}
WS=${WORK_STEALING:-false}
source loadtest/bench-env.sh
need wrk wrk
need nginx nginx-light
need taskset util-linux
cargo build --release --quiet --bins --example passthrough

dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
UP=19000; NGX=19080; JWT=19081; JWT_STATUS=19091; BARE=19082

upstream_conf "$dir" "$UP"
cat > "$dir/proxy.conf" <<NGINX
worker_processes 1; daemon off; pid $dir/ngx.pid; error_log $dir/ngx.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 10000000;
  upstream up { server 127.0.0.1:$UP; keepalive 128; }
  server { listen 127.0.0.1:$NGX;
    location / { proxy_pass http://up/protected; proxy_http_version 1.1;
                 proxy_set_header Connection ""; } } }
NGINX
proxy_conf "$dir" "$JWT" "$JWT_STATUS" "$UP" "$WS"
post_lua "$dir"

# nginx forks its worker: the worker is what we measure.
taskset -c 1 nginx -c "$dir/upstream.conf" -e "$dir/up.err" & pids+=($!)
taskset -c 0 nginx -c "$dir/proxy.conf" -e "$dir/ngx.err" & pids+=($!)
( for k in HTTP_PORT STATUS_PORT LISTEN_ADDR UPSTREAM_URL ACCESS_LOG; do unset $k; done
  RUST_LOG=error exec taskset -c 0 target/release/jwt-proxy -c "$dir/jwt-proxy.yaml" ) & pids+=($!)
jwt_pid=$!
UPSTREAM=127.0.0.1:$UP LISTEN=127.0.0.1:$BARE THREADS=1 WORK_STEALING=$WS taskset -c 0 target/release/examples/passthrough & pids+=($!)
bare_pid=$!
sleep 1.5
ngx_worker=$(pgrep -P "$(cat "$dir/ngx.pid")" | head -n 1)
up_worker=$(pgrep -P "$(cat "$dir/up.pid")" | head -n 1)

rows=()
run "(a) upstream directly (nginx return 200)" "http://127.0.0.1:$UP/protected" "$up_worker" up
run "(b) jwt-proxy" "http://127.0.0.1:$JWT/" "$jwt_pid" jwt
run "(c) bare Pingora pass-through" "http://127.0.0.1:$BARE/protected" "$bare_pid" bare
run "(d) nginx proxy_pass" "http://127.0.0.1:$NGX/" "$ngx_worker" ngx

echo
echo "wrk -t1 -c$CONNS -d${DURATION}s, POST 17 B JSON; proxies pinned to CPU 0 (1 thread, work_stealing: $WS), wrk + upstream on CPU 1; $(date -u +%F)"
echo
echo "| target | requests/s | p50 | p99 | CPU µs/request of the process | errors |"
echo "|---|---|---|---|---|---|"
for r in "${rows[@]}"; do echo "| ${r//|/ | } |"; done
echo
awk -v j="$cpu_jwt" -v b="$cpu_bare" -v n="$cpu_ngx" 'BEGIN {
  printf "CPU per request: jwt-proxy / bare Pingora = %.2f, jwt-proxy / nginx = %.2f, bare Pingora / nginx = %.2f\n", j/b, j/n, b/n }'
