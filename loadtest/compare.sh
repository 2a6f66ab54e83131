#!/usr/bin/env bash
# Side-by-side comparison, one run, same load (wrk, POST, keep-alive) against:
#   the upstream directly; HAProxy 2.6 minting the same HS512 token (loadtest/peers/
#   haproxy-jwt.cfg, the one peer doing this exact job); jwt-proxy as shipped (conf/
#   jwt-proxy.yaml, access log on, into a pipe); the same with ACCESS_LOG=off; a bare Pingora
#   pass-through (examples/passthrough.rs, same dependencies); nginx proxy_pass.
# The upstream is nginx answering a fixed small body (cheap, so it is never the bottleneck).
# Pinning on 2 cores: the proxy under test alone on CPU 0 (jwt-proxy's default worker count
# follows the CPUs it may use: 1 here; HAProxy nbthread 1; nginx 1 worker); wrk, the upstream
# and the log reader on CPU 1. Reported, for each:
#   1. POST BODY bytes (200): requests/s, p50/p99, CPU µs per request of the proxy process
#      (utime+stime from /proc/PID/stat), and its ratio to HAProxy-jwt and to bare Pingora;
#   2. bodies of 16 KB and 256 KB: the same for HAProxy-jwt, jwt-proxy and bare Pingora;
#   3. syscalls per request (strace -c -f attached for a short run; strace slows the process,
#      the counts per request are what matter);
#   4. latency at a fixed rate of half HAProxy-jwt's maximum, then of half jwt-proxy's (open
#      loop: oha -q with latency correction, so a stall counts for every request that should
#      have been sent).
# The machine is shared and noisy: sections 1 and 2 run ROUNDS rounds, each target once per round
# in turn, and report each target's median round (by CPU per request), with the spread.
# Settings: DURATION (8), ROUNDS (3), CONNECTIONS (32), BODY (200), SKIP (space-separated
# section numbers).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNECTIONS:-32}
BODY=${BODY:-200}
SKIP=" ${SKIP:-} "
source loadtest/bench-env.sh
need wrk wrk
need nginx nginx-light
need haproxy haproxy
need strace strace
need taskset util-linux
command -v oha >/dev/null 2>&1 || cargo install oha --locked --quiet
cargo build --release --quiet --bins --example passthrough

bench_dir
UP=19000; NGX=19080; JWT=19081; JWT_STATUS=19091; BARE=19082; HAP=19083; NOLOG=19084; NOLOG_STATUS=19094

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
post_lua "$dir" "$BODY"
post_lua "$dir/16k" 16384
post_lua "$dir/256k" 262144

# jwt-proxy with the shipped configuration (see shipped_conf), alone on CPU 0.
shipped() { # name http_port status_port -- env...
    local name=$1 port=$2 sport=$3; shift 4
    shipped_conf "$name"
    # stdout (the access log) into a pipe read on CPU 1, as a container runtime would.
    ( unset_proxy_env
      export HTTP_PORT=$port STATUS_PORT=$sport LISTEN_ADDR=127.0.0.1 \
             UPSTREAM_URL=http://127.0.0.1:$UP/protected JWT_SECRET_FILE=$PWD/conf/demo-secret.txt \
             RUST_LOG=error "$@"
      exec taskset -c 0 target/release/jwt-proxy -c "$dir/$name.yaml" ) \
        | taskset -c 1 cat > /dev/null &
    pids+=($!)
}

taskset -c 1 nginx -c "$dir/upstream.conf" -e "$dir/up.err" & pids+=($!)
taskset -c 0 nginx -c "$dir/proxy.conf" -e "$dir/ngx.err" & pids+=($!)
HTTP_PORT=$HAP UPSTREAM_ADDR=127.0.0.1:$UP JWT_KEY_B64=$(base64 -w0 < conf/demo-secret.txt) \
    taskset -c 0 haproxy -db -f loadtest/peers/haproxy-jwt.cfg & pids+=($!)
hap_pid=$!
shipped shipped "$JWT" "$JWT_STATUS" --
shipped nolog "$NOLOG" "$NOLOG_STATUS" -- ACCESS_LOG=off
UPSTREAM=127.0.0.1:$UP LISTEN=127.0.0.1:$BARE THREADS=1 WORK_STEALING=false \
    taskset -c 0 target/release/examples/passthrough & pids+=($!)
bare_pid=$!
for port in $JWT_STATUS $NOLOG_STATUS; do
    for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
done
sleep 0.5
jwt_pid=$(pgrep -f -- "-c $dir/shipped.yaml" | head -n 1)
nolog_pid=$(pgrep -f -- "-c $dir/nolog.yaml" | head -n 1)
pids+=("$jwt_pid" "$nolog_pid")   # the pipeline's pid is the log reader's; stop the proxies too
ngx_worker=$(pgrep -P "$(cat "$dir/ngx.pid")" | head -n 1)
up_worker=$(pgrep -P "$(cat "$dir/up.pid")" | head -n 1)

# Every answer through a proxy must carry a token (or, for the pass-throughs, be a 200).
for port in $JWT $HAP; do
    curl -sf -D - -o /dev/null -X POST -d x "http://127.0.0.1:$port/" | grep -qi '^x-my-jwt: ey' \
        || { echo "no token from 127.0.0.1:$port" >&2; exit 1; }
done

echo "jwt-proxy as shipped: $(curl -s "http://127.0.0.1:$JWT_STATUS/status.json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["worker_threads"])') worker thread(s); $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD)$(git diff --quiet || echo '+changes')"

# rounds "NAME|URL|PID|VAR" ...: ROUNDS rounds of `run` over the targets in turn; then `rows`
# holds each target's median round (by CPU per request) plus the range of CPU per request,
# and cpu_VAR that median.
rounds() {
    local all=() t name url pid var
    for ((k = 1; k <= ROUNDS; k++)); do
        for t in "$@"; do
            IFS='|' read -r name url pid var <<<"$t"
            rows=(); run "$name" "$url" "$pid" "$var"
            all+=("$var|${rows[0]}")
        done
    done
    rows=()
    for t in "$@"; do
        IFS='|' read -r name url pid var <<<"$t"
        local mine; mine=$(printf '%s\n' "${all[@]}" | awk -F'|' -v v="$var" '$1 == v' | sort -t'|' -k6,6 -g)
        local n; n=$(echo "$mine" | wc -l)
        local mid; mid=$(echo "$mine" | sed -n "$(( (n + 1) / 2 ))p")
        local lo hi; lo=$(echo "$mine" | head -n1 | cut -d'|' -f6); hi=$(echo "$mine" | tail -n1 | cut -d'|' -f6)
        IFS='|' read -r _ name rps p50 p99 cpu errs <<<"$mid"
        rows+=("$name|$rps|$p50|$p99|$cpu ($lo-$hi)|$errs")
        eval "cpu_$var=$cpu"
    done
}

ratio_table() { # rows... (uses cpu_hap, cpu_bare)
    echo "| target | requests/s | p50 | p99 | CPU µs/request | vs HAProxy-jwt | vs bare Pingora | errors |"
    echo "|---|---:|---:|---:|---:|---:|---:|---|"
    for r in "${rows[@]}"; do
        IFS='|' read -r name rps p50 p99 cpu errs <<<"$r"
        local rh rb c=${cpu%% *}
        rh=$(awk -v c="$c" -v h="${cpu_hap:-0}" 'BEGIN { if (h > 0) printf "%.2fx", c/h; else print "-" }')
        rb=$(awk -v c="$c" -v b="${cpu_bare:-0}" 'BEGIN { if (b > 0) printf "%.2fx", c/b; else print "-" }')
        echo "| $name | $rps | $p50 | $p99 | $cpu | $rh | $rb | $errs |"
    done
}

if [[ $SKIP != *" 1 "* ]]; then
    rounds "upstream directly (nginx return 200)|http://127.0.0.1:$UP/protected|$up_worker|up" \
           "HAProxy 2.6 minting HS512|http://127.0.0.1:$HAP/|$hap_pid|hap" \
           "jwt-proxy, shipped conf, access log on|http://127.0.0.1:$JWT/|$jwt_pid|jwt" \
           "jwt-proxy, shipped conf, ACCESS_LOG=off|http://127.0.0.1:$NOLOG/|$nolog_pid|nolog" \
           "bare Pingora pass-through|http://127.0.0.1:$BARE/protected|$bare_pid|bare" \
           "nginx proxy_pass, no JWT|http://127.0.0.1:$NGX/|$ngx_worker|ngx"
    hap_rps=${rows[1]#*|}; hap_rps=${hap_rps%%|*}
    jwt_rps=${rows[2]#*|}; jwt_rps=${jwt_rps%%|*}
    echo
    echo "## 1. POST $BODY B, wrk -t1 -c$CONNS -d${DURATION}s, median of $ROUNDS rounds (CPU range in brackets); proxy alone on CPU 0"
    echo
    ratio_table
fi

if [[ $SKIP != *" 2 "* ]]; then
    for size in 16k 256k; do
        cpu_hap=0; cpu_bare=0
        sdir=$dir; dir=$dir/$size
        rounds "HAProxy-jwt|http://127.0.0.1:$HAP/|$hap_pid|hap" \
               "jwt-proxy, shipped|http://127.0.0.1:$JWT/|$jwt_pid|jwt" \
               "bare Pingora|http://127.0.0.1:$BARE/protected|$bare_pid|bare"
        dir=$sdir
        echo
        echo "## 2. POST $size body, same load, median of $ROUNDS rounds"
        echo
        ratio_table
    done
fi

if [[ $SKIP != *" 3 "* ]]; then
    echo
    echo "## 3. syscalls per request (strace -c -f attached for a 3 s wrk run, POST $BODY B)"
    echo
    echo "| target | requests | per request: total | read side | write side | other (top 4) |"
    echo "|---|---:|---:|---|---|---|"
    for t in "HAProxy-jwt $hap_pid http://127.0.0.1:$HAP/" \
             "jwt-proxy,shipped $jwt_pid http://127.0.0.1:$JWT/" \
             "bare-Pingora $bare_pid http://127.0.0.1:$BARE/protected" \
             "nginx $ngx_worker http://127.0.0.1:$NGX/"; do
        read -r name pid url <<<"$t"
        strace -c -f -q -p "$pid" -o "$dir/strace.$pid" & spid=$!
        sleep 0.5
        out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d3s -s "$dir/post.lua" "$url")
        kill -INT $spid; wait $spid 2>/dev/null || true
        n=$(echo "$out" | awk '/requests in/ {print $1}')
        awk -v n="$n" -v name="${name/,/, }" '
            /^ *[0-9.]+ +[0-9.]+ +[0-9]+ +[0-9]+ +([0-9]+ +)?[a-z_0-9]+$/ {
                sc = $NF; c = $4; if (sc == "total") next; total += c
                if (sc ~ /^(read|recvfrom|recvmsg|readv)$/) rd = rd sprintf("%s %.2f ", sc, c/n)
                else if (sc ~ /^(write|writev|sendto|sendmsg|sendfile|splice)$/) wr = wr sprintf("%s %.2f ", sc, c/n)
                else { other[sc] = c }
            }
            END {
                o = ""; for (k = 0; k < 4; k++) { best = ""; for (s in other) if (best == "" || other[s] > other[best]) best = s
                    if (best == "") break; o = o sprintf("%s %.2f ", best, other[best]/n); delete other[best] }
                printf "| %s | %d | %.2f | %s| %s| %s|\n", name, n, total/n, rd, wr, o }' "$dir/strace.$pid"
    done
fi

if [[ $SKIP != *" 4 "* ]]; then
  head -c "$BODY" /dev/zero | tr '\0' 'x' > "$dir/body"
  # Half HAProxy-jwt's maximum (the issue's yardstick), and half jwt-proxy's own (a load it can
  # carry, for the latency a user sees short of saturation).
  for which in HAProxy-jwt jwt-proxy; do
    if [[ $which == HAProxy-jwt ]]; then max=${hap_rps:-20000}; else max=${jwt_rps:-10000}; fi
    rate=$(awk -v r="$max" 'BEGIN {printf "%d", r / 2}')
    echo
    echo "## 4. fixed rate: $rate req/s (half $which's maximum above), oha -c$CONNS -z${DURATION}s --latency-correction, POST $BODY B"
    echo
    echo "| target | achieved req/s | p50 | p99 | p99.9 | non-2xx, errors |"
    echo "|---|---:|---:|---:|---:|---|"
    for t in "HAProxy-jwt http://127.0.0.1:$HAP/" "jwt-proxy,shipped http://127.0.0.1:$JWT/" \
             "bare-Pingora http://127.0.0.1:$BARE/protected"; do
        read -r name url <<<"$t"
        taskset -c 1 oha --no-tui --output-format json -c "$CONNS" -z "${DURATION}s" -q "$rate" \
            --latency-correction -m POST -D "$dir/body" -H 'x-user: wrk' "$url" > "$dir/oha.json" 2>/dev/null
        python3 - "${name/,/, }" "$dir/oha.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[2]))
s, p = d["summary"], d["latencyPercentiles"]
codes = d.get("statusCodeDistribution", {})
bad = [f"{v} x {k}" for k, v in codes.items() if not k.startswith("2")]
bad += [f"{v} x {k}" for k, v in d.get("errorDistribution", {}).items()]
bad = ", ".join(bad) or "0"
ms = lambda v: f"{v * 1000:.2f} ms"
print(f"| {sys.argv[1]} | {s['requestsPerSec']:.0f} | {ms(p['p50'])} | {ms(p['p99'])} | {ms(p['p99.9'])} | {bad} |")
PY
    done
  done
fi
