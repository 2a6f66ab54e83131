#!/usr/bin/env bash
# The image and the compose stack with whichever container engine this machine has: Docker
# where its engine answers, else podman with podman-compose. `make docker-build`, `make up`,
# `make down` and tests/container.rs all go through here.
#   scripts/container.sh engine             print `docker` or `podman` (exit 1: neither)
#   scripts/container.sh setup              make the engine usable (podman: see below)
#   scripts/container.sh build              the image, jwt-proxy:latest
#   scripts/container.sh compose ARGS...    `docker compose ARGS` or `podman-compose ARGS`
#   scripts/container.sh up [OPTS...]       build, then `compose OPTS up -d`
#   scripts/container.sh down [OPTS...]     `compose OPTS stop proxy`, then `compose OPTS down`
#                                           until no container of the stack is left (exit 1 if
#                                           one still is after three tries)
# OPTS are compose's own options (`-p NAME`, `-f FILE`). CONTAINER_ENGINE=docker|podman chooses.
#
# `down` stops the proxy on its own first: it drains (requests in flight are answered) while
# the upstream still runs. podman-compose's `down` stops every service at once, so the demo
# upstream would go while the proxy still forwards to it.
#
# podman setup (as root, on Debian): installs podman, runc and debootstrap when missing; where the
# base images cannot be pulled (no registry, as on our CI machines), scripts/base-images.sh makes
# stand-ins for them; if a container cannot start with podman's default runtime, it is set to runc.
set -euo pipefail
# Compose runs in the caller's directory (its docker-compose.yml and override); the image is
# built from the repository.
ROOT=$(cd "$(dirname "$0")/.." && pwd)
IMAGE=jwt-proxy:latest

engine() {
    case "${CONTAINER_ENGINE:-}" in
    docker | podman) echo "$CONTAINER_ENGINE"; return ;;
    "") ;;
    *) echo "CONTAINER_ENGINE must be docker or podman, not '$CONTAINER_ENGINE'" >&2; exit 2 ;;
    esac
    if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
        echo docker
    elif command -v podman >/dev/null 2>&1; then
        echo podman
    else
        return 1
    fi
}

# podman-compose: $PODMAN_COMPOSE, the project venv's (`make test` installs it there), or PATH.
podman_compose() {
    local pc=${PODMAN_COMPOSE:-}
    [ -z "$pc" ] && [ -x "$ROOT/.venv/bin/podman-compose" ] && pc=$ROOT/.venv/bin/podman-compose
    [ -z "$pc" ] && pc=$(command -v podman-compose || true)
    if [ -z "$pc" ]; then
        echo "podman-compose not found: run \`make test-deps\` (installs it in .venv) or" \
            "\`pip install $(grep '^podman-compose==' "$ROOT/tests/requirements.txt")\`" >&2
        exit 2
    fi
    echo "$pc"
}

compose() {
    if [ "$(engine)" = docker ]; then
        docker compose "$@"
    else
        "$(podman_compose)" "$@"
    fi
}

# The IDs of the stack's containers, running or not.
leftover() {
    if [ "$(engine)" = docker ]; then
        docker compose "$@" ps -a -q
    else
        "$(podman_compose)" "$@" ps -q
    fi | tr '\n' ' ' | sed 's/ *$//'
}

apt_install() {
    local need=() p
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
    ((${#need[@]})) || return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "needs the Debian packages ${need[*]} (run as root, or install them)" >&2
        exit 2
    fi
    echo "installing ${need[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
}

setup() {
    if [ "$(engine 2>/dev/null || true)" = docker ]; then return; fi
    command -v podman >/dev/null 2>&1 || apt_install podman
    apt_install runc
    "$ROOT/scripts/base-images.sh"
    # A sandbox (no cgroup delegation, rlimits refused) can stop crun; runc with no default
    # ulimits works there. Only an unconfigured machine is changed, and only if it needs it.
    local conf=/etc/containers/containers.conf
    if ! podman run --rm --network none docker.io/library/debian:bookworm-slim true 2>/dev/null; then
        if [ -e $conf ] || [ "$(id -u)" != 0 ]; then
            echo "podman cannot start a container; see $conf" >&2
            podman run --rm --network none docker.io/library/debian:bookworm-slim true
            exit 2
        fi
        mkdir -p /etc/containers
        printf '[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\n' >$conf
        echo "podman could not start a container with its default runtime: wrote $conf (runc)" >&2
        podman run --rm --network none docker.io/library/debian:bookworm-slim true
    fi
}

build() {
    local e
    e=$(engine)
    # podman's default OCI format drops HEALTHCHECK; the docker format keeps it.
    if [ "$e" = podman ]; then
        podman build --format docker -t "$IMAGE" "$ROOT"
    else
        docker build -t "$IMAGE" "$ROOT"
    fi
}

cmd=${1:-}
shift || true
case "$cmd" in
engine) engine || { echo "no container engine: neither a Docker engine nor podman" >&2; exit 1; } ;;
setup) setup ;;
build) build ;;
compose) compose "$@" ;;
up)
    setup
    build
    compose "$@" up -d
    echo "proxy: http://127.0.0.1:${HTTP_PORT:-8080}/  status: http://127.0.0.1:${STATUS_PORT:-8081}/status"
    ;;
down)
    compose "$@" stop proxy
    # A container that its restart policy is just restarting can escape a removal, and
    # podman-compose's `down` still exits 0: check, and try again.
    for _ in 1 2 3; do
        compose "$@" down
        left=$(leftover "$@")
        [ -z "$left" ] && exit 0
        echo "container.sh: still there after down: $left; trying again" >&2
        sleep 2
    done
    echo "container.sh: could not remove every container of the stack: $left" >&2
    exit 1
    ;;
*)
    sed -n '2,11p' "$0" >&2
    exit 2
    ;;
esac
