#!/usr/bin/env bash
# Memory per idle keep-alive connection: N client connections (IDLE_CONNECTIONS, 5000) each
# send one POST, read the answer and then stay open, idle. The resident memory (VmRSS) of each
# proxy's process tree is read before the connections open (after a warm-up) and once they all
# idle; the difference over N is what one idle client costs. Targets: nginx proxy_pass, HAProxy
# minting the JWT (loadtest/peers/haproxy-jwt.cfg, maxconn raised to fit), the bare Pingora
# pass-through with Pingora's default 64 KiB read buffer and with none, and jwt-proxy as shipped.
# The upstream is nginx. One run, one target at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${IDLE_CONNECTIONS:-5000}
source loadtest/bench-env.sh
need nginx nginx-light
need haproxy haproxy
cargo build --release --quiet --bins --example passthrough
ulimit -n "$(ulimit -Hn)"   # each proxy holds 2 fds per client (client + its own end)

bench_dir
UP=19400; PORT=19401; STATUS=19402
upstream_conf "$dir" "$UP"
sed -i 's/worker_connections 4096/worker_connections 20000/' "$dir/upstream.conf"
taskset -c 1 nginx -c "$dir/upstream.conf" -e "$dir/up.err" & pids+=($!)

cat > "$dir/idle.py" <<'PY'
import socket, sys, time
port, path, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
body = b'{"hello":"world"}'
req = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nx-user: idle\r\ncontent-type: application/json\r\n"
       f"content-length: {len(body)}\r\n\r\n").encode() + body
socks = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(req)
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, rest = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200"), head[:80]
    length = next(int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:"))
    while len(rest) < length:
        rest += s.recv(65536)
    socks.append(s)
print("open", flush=True)
sys.stdin.readline()   # hold them until told
PY

# rss PID: resident KiB of PID and its children.
rss() { local t=0 p; for p in $1 $(pgrep -P "$1" || true); do t=$((t + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status"))); done; echo $t; }

measure() { # name pid port path
    local name=$1 pid=$2 port=$3 path=$4
    for _ in $(seq 100); do python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null && break; sleep 0.1; done
    python3 "$dir/idle.py" "$port" "$path" 200 < /dev/null > /dev/null   # warm-up: buffers, pools
    sleep 1
    local before; before=$(rss "$pid")
    coproc CLIENT { python3 "$dir/idle.py" "$port" "$path" "$N"; }
    read -r _ <&"${CLIENT[0]}"
    sleep 2
    local after; after=$(rss "$pid")
    echo >&"${CLIENT[1]}"; wait "$CLIENT_PID" 2>/dev/null || true
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
    rows+=("$name|$before|$after|$(awk -v a="$after" -v b="$before" -v n="$N" 'BEGIN {printf "%.1f", (a - b) / n}')")
}

rows=()
cat > "$dir/proxy.conf" <<NGINX
worker_processes 1; daemon off; pid $dir/ngx.pid; error_log $dir/ngx.err; worker_rlimit_nofile 50000;
events { worker_connections 20000; }
http { access_log off; keepalive_timeout 300s; keepalive_requests 10000000;
  upstream up { server 127.0.0.1:$UP; keepalive 128; }
  server { listen 127.0.0.1:$PORT;
    location / { proxy_pass http://up/protected; proxy_http_version 1.1;
                 proxy_set_header Connection ""; } } }
NGINX
taskset -c 0 nginx -c "$dir/proxy.conf" -e "$dir/ngx.err" & ngx=$!
measure "nginx proxy_pass" "$ngx" "$PORT" /

sed -e "s/maxconn 4096/maxconn $((N + 1000))/" loadtest/peers/haproxy-jwt.cfg > "$dir/haproxy.cfg"
HTTP_PORT=$PORT UPSTREAM_ADDR=127.0.0.1:$UP JWT_KEY_B64=$(base64 -w0 < conf/demo-secret.txt) \
    taskset -c 0 haproxy -db -f "$dir/haproxy.cfg" & hap=$!
measure "HAProxy 2.6 minting HS512" "$hap" "$PORT" /

UPSTREAM=127.0.0.1:$UP LISTEN=127.0.0.1:$PORT THREADS=1 WORK_STEALING=false \
    taskset -c 0 target/release/examples/passthrough & bare=$!
measure "bare Pingora, default 64 KiB read buffer" "$bare" "$PORT" /protected

UPSTREAM=127.0.0.1:$UP LISTEN=127.0.0.1:$PORT THREADS=1 WORK_STEALING=false READ_BUFFER=0 \
    taskset -c 0 target/release/examples/passthrough & bare0=$!
measure "bare Pingora, no read buffer" "$bare0" "$PORT" /protected

shipped_conf shipped
( unset_proxy_env
  HTTP_PORT=$PORT STATUS_PORT=$STATUS LISTEN_ADDR=127.0.0.1 UPSTREAM_URL=http://127.0.0.1:$UP/protected \
  JWT_SECRET_FILE=$PWD/conf/demo-secret.txt CLIENT_KEEPALIVE_SECS=300 RUST_LOG=error \
  exec taskset -c 0 target/release/jwt-proxy -c "$dir/shipped.yaml" > /dev/null ) & jwt=$!
measure "jwt-proxy, shipped conf" "$jwt" "$PORT" /

echo
echo "$N idle keep-alive connections (one POST each), RSS of the process tree; $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD)$(git diff --quiet || echo '+changes')"
echo
echo "| target | RSS before (KiB) | RSS with $N idle (KiB) | per idle connection (KiB) |"
echo "|---|---:|---:|---:|"
for r in "${rows[@]}"; do echo "| ${r//|/ | } |"; done
