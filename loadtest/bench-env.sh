# Sourced by compare.sh, compare-algs.sh, idle-memory.sh and callgrind.sh: installing their tools, and the
# configs and helpers the benchmarks share (an nginx upstream, a one-worker jwt-proxy, the wrk
# script, CPU ticks of a process).

# need COMMAND PACKAGE: install the Debian package when the command is missing.
need() {
    command -v "$1" >/dev/null 2>&1 || {
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
    }
}

# bench_dir: a scratch directory in `dir` and a list `pids` of processes to stop; at exit the
# processes are stopped and the directory removed.
bench_dir() {
    dir=$(mktemp -d)
    pids=()
    trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"' EXIT
}

# shipped_conf NAME: conf/jwt-proxy.yaml as shipped, with only its pid file and upgrade socket
# moved into DIR (`dir`); writes DIR/NAME.yaml.
shipped_conf() {
    sed -e '/^# pid_file:/d; /^# upgrade_sock:/d' conf/jwt-proxy.yaml > "$dir/$1.yaml"
    printf 'pid_file: %s
upgrade_sock: %s
' "$dir/$1.pid" "$dir/$1.sock" >> "$dir/$1.yaml"
}

# unset_proxy_env: forget the caller's jwt-proxy settings (in a subshell that starts a proxy),
# so that only what the benchmark sets applies.
unset_proxy_env() {
    local k
    for k in $(env | grep -oE '^(HTTP_PORT|STATUS_PORT|LISTEN_ADDR|UPSTREAM_URL|ACCESS_LOG|THREADS|JWT_[A-Z_]*)='); do
        unset "${k%=}"
    done
}

# upstream_conf DIR PORT: nginx answering a fixed small body on 127.0.0.1:PORT (cheap, so it
# is never the bottleneck); writes DIR/upstream.conf.
upstream_conf() {
    cat >"$1/upstream.conf" <<NGINX
worker_processes 1; daemon off; pid $1/up.pid; error_log $1/up.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 10000000;
  server { listen 127.0.0.1:$2; location / { return 200 '{"ok":true}'; } } }
NGINX
}

# proxy_conf DIR HTTP_PORT STATUS_PORT UPSTREAM_PORT WORK_STEALING: one worker thread, no
# access log, the demo key, quick shutdown (the shortest grace period the 1 s upstream timeout
# allows); writes DIR/jwt-proxy.yaml.
proxy_conf() {
    cat >"$1/jwt-proxy.yaml" <<YAML
version: 1
threads: 1
work_stealing: $5
grace_period_seconds: 2
graceful_shutdown_timeout_seconds: 1
pid_file: $1/jwt-proxy.pid
upgrade_sock: $1/jwt-proxy.sock
jwt_proxy:
  listen_addr: 127.0.0.1
  http_port: $2
  status_port: $3
  upstream_url: http://127.0.0.1:$4/protected
  upstream_timeout_ms: 1000
  drain_idle_secs: 1
  jwt_demo_key: true
  access_log: "off"
YAML
}

# post_lua DIR [SIZE]: the wrk script the comparisons load with (POST a JSON body, 17 B or
# SIZE bytes, and a user header); writes DIR/post.lua.
post_lua() {
    mkdir -p "$1"
    local body='{"hello":"world"}'
    if [ -n "${2:-}" ]; then
        body=$(printf '{"data":"%s"}' "$(head -c $(($2 - 11)) /dev/zero | tr '\0' 'x')")
    fi
    printf 'wrk.method = "POST"\nwrk.body = [[%s]]\nwrk.headers["content-type"] = "application/json"\nwrk.headers["x-user"] = "wrk"\n' \
        "$body" > "$1/post.lua"
}

# ticks PID: CPU time (user + system, in clock ticks) the process has used.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# run NAME URL PID VAR: a 2 s warm-up, then DURATION s of wrk (CONNS connections, DIR/post.lua)
# from CPU 1 against URL; appends "NAME|req/s|p50|p99|CPU µs per request of PID|errors" to the
# array `rows` and sets cpu_VAR. Needs dir, DURATION, CONNS.
run() {
    local name=$1 url=$2 pid=$3
    taskset -c 1 wrk -t1 -c"$CONNS" -d2s -s "$dir/post.lua" "$url" >/dev/null   # warm-up
    local t0; t0=$(ticks "$pid")
    local out; out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$dir/post.lua" "$url")
    local t1; t1=$(ticks "$pid")
    local reqs rps p50 p99 errs
    reqs=$(echo "$out" | awk '/requests in/ {print $1}')
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p50=$(echo "$out" | awk '$1=="50%" {print $2}')
    p99=$(echo "$out" | awk '$1=="99%" {print $2}')
    errs=$(echo "$out" | awk '/Non-2xx|Socket errors/ {print}' | tr '\n' ' ')
    local cpu_us; cpu_us=$(awk -v t=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v n="$reqs" 'BEGIN {printf "%.1f", t / hz * 1000000 / n}')
    rows+=("$name|$rps|$p50|$p99|$cpu_us|${errs:-none}")
    eval "cpu_$4=$cpu_us"
}
