# syntax=docker/dockerfile:1
# jwt-proxy image: build with the project's toolchain, run the three binaries as a non-root user.

ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-slim-bookworm AS builder
# cmake builds Pingora's zlib-ng. Versions come from the pinned bookworm base image; pinning
# them again here would break on every Debian point release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src

# Dependencies in their own layer: build them against stub sources with the real manifest, so
# editing our code does not rebuild Pingora.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src/bin benches \
 && echo 'fn main() {}' > src/main.rs \
 && echo 'fn main() {}' > src/bin/jwt-post.rs \
 && echo 'fn main() {}' > src/bin/protected-echo.rs \
 && echo 'fn main() {}' > benches/mint.rs \
 && touch src/lib.rs \
 && cargo build --release --locked --bins \
 && rm -rf src benches target/release/deps/jwt_proxy* target/release/deps/libjwt_proxy* \
           target/release/.fingerprint/jwt-proxy-*

COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bins \
 && mkdir -p /out \
 && cp target/release/jwt-proxy target/release/jwt-post target/release/protected-echo /out/ \
 && strip --strip-debug /out/*

FROM debian:bookworm-slim AS runtime
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin jwtproxy
COPY --from=builder /out/ /usr/local/bin/
COPY conf/ /etc/jwt-proxy/
COPY scripts/supervise.sh /usr/local/bin/jwt-proxy-supervise
WORKDIR /etc/jwt-proxy
USER 10001
# The status service must listen beyond the container's loopback to be published; compose
# publishes it on the host's loopback only. Beyond loopback jwt-proxy requires a status token:
# give STATUS_TOKEN_FILE (compose mounts a secret there). START_ERROR_PAUSE_SECS: after a refused
# configuration the supervisor and protected-echo wait 10 s before exiting, so that a restart
# policy without back-off (podman's) does not spin.
ENV STATUS_ADDR=0.0.0.0 \
    RUST_LOG=info \
    JWT_PROXY_BIN=jwt-proxy \
    JWT_PROXY_CONF=/etc/jwt-proxy/jwt-proxy.yaml \
    SUPERVISOR_PID_FILE=/tmp/jwt-proxy-supervisor.pid \
    START_ERROR_PAUSE_SECS=10
EXPOSE 8080 8081
# No curl in the image: jwt-post's probe mode does the GET.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["jwt-post", "--probe", "--timeout", "2", "http://127.0.0.1:8081/healthz"]
# SIGTERM: Pingora stops accepting, lets in-flight requests finish (grace period), then exits.
# The supervisor keeps the container alive across graceful upgrades (SIGHUP) and passes
# TERM/INT on to jwt-proxy; run it under an init (compose: `init: true`).
STOPSIGNAL SIGTERM
ENTRYPOINT ["jwt-proxy-supervise"]
