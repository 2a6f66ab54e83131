#!/usr/bin/env bash
# What each signing algorithm costs the proxy, side by side in one run, same load (wrk, POST,
# keep-alive) and the same one-worker jwt-proxy pinned to CPU 0 (wrk and the nginx upstream on
# CPU 1), signing with a keyset of one key made by `jwt-proxy keys new`: HS512, EdDSA, ES256.
# For each: requests/s, p50/p99, and the proxy's CPU µs per request (utime+stime from
# /proc/PID/stat); then each algorithm's CPU per request against HS512's.
# Settings: DURATION (10), CONNECTIONS (32).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
CONNS=${CONNECTIONS:-32}
source loadtest/bench-env.sh
need wrk wrk
need nginx nginx-light
need taskset util-linux
cargo build --release --quiet --bins

bench_dir
UP=19100; JWT=19181; JWT_STATUS=19191

upstream_conf "$dir" "$UP"
proxy_conf "$dir" "$JWT" "$JWT_STATUS" "$UP" false
post_lua "$dir"
taskset -c 1 nginx -c "$dir/upstream.conf" -e "$dir/up.err" & pids+=($!)

rows=()
for alg in HS512 EdDSA ES256; do
    mkdir -p "$dir/keys-$alg"
    entry=$(cd "$dir/keys-$alg" && "$OLDPWD/target/release/jwt-proxy" keys new --alg "$alg" --kid "k-$alg" 2>/dev/null)
    printf 'signing: k-%s\nkeys:\n%s\n' "$alg" "$entry" > "$dir/keys-$alg/keyset.yaml"
    ( unset_proxy_env
      JWT_KEYS="$dir/keys-$alg/keyset.yaml" RUST_LOG=error \
        exec taskset -c 0 target/release/jwt-proxy -c "$dir/jwt-proxy.yaml" ) & pid=$!
    pids+=($pid)
    for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$JWT_STATUS/healthz" && break; sleep 0.1; done
    run "$alg" "http://127.0.0.1:$JWT/" "$pid" "$alg"
    kill "$pid"; wait "$pid" 2>/dev/null || true
done

echo
echo "wrk -t1 -c$CONNS -d${DURATION}s, POST 17 B JSON; jwt-proxy pinned to CPU 0 (1 thread), wrk + upstream on CPU 1; $(date -u +%F)"
echo
echo "| signing alg | requests/s | p50 | p99 | CPU µs/request of jwt-proxy | errors |"
echo "|---|---|---|---|---|---|"
for r in "${rows[@]}"; do echo "| ${r//|/ | } |"; done
echo
awk -v h="$cpu_HS512" -v e="$cpu_EdDSA" -v p="$cpu_ES256" 'BEGIN {
  printf "CPU per request against HS512: EdDSA %.2f, ES256 %.2f\n", e/h, p/h }'
