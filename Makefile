# jwt-proxy. `make run` and `make test` do all set-up a fresh machine needs.
HTTP_PORT ?= 8080
STATUS_PORT ?= 8081
UPSTREAM_PORT ?= 9000
CARGO ?= cargo
VENV := .venv
PY := $(VENV)/bin/python
BIN := target/release

export HTTP_PORT STATUS_PORT

.PHONY: soak fuzz deps test-deps build run reload test lint client clean docker-build up down loadtest loadtest-k6 bench compare compare-algs idle-memory callgrind

# System packages Pingora's build needs (zlib-ng is built with cmake).
deps:
	@command -v cmake >/dev/null 2>&1 || { \
	  echo "installing cmake (needed to build Pingora's zlib-ng)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq cmake >/dev/null; }

# What only the tests need: curl, headless Chromium for the status-page browser test, HAProxy
# for the rolling restart behind a balancer (tests/balancer.rs runs /usr/sbin/haproxy, which is
# not on a non-root user's PATH: hence the path, not `command -v`), and a container engine for
# tests/container.rs (podman, where no Docker engine answers; see scripts/container.sh).
test-deps: deps
	@command -v curl >/dev/null 2>&1 || { \
	  echo "installing curl (a client of the hostile-input tests)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq curl >/dev/null; }
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium (the status-page browser test)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }
	@test -x /usr/sbin/haproxy || { \
	  echo "installing haproxy (the rolling restart behind a balancer)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq haproxy >/dev/null; }
	@scripts/container.sh setup

build: deps
	$(CARGO) build --release --bins

# What `make run` and `make reload` give the supervisor and jwt-proxy: the demo upstream, and
# the public demo key unless you set a key (JWT_SECRET_FILE) or JWT_DEMO_KEY=false.
RUN_ENV = UPSTREAM_URL=$${UPSTREAM_URL:-http://127.0.0.1:$(UPSTREAM_PORT)/protected} \
	JWT_DEMO_KEY=$${JWT_DEMO_KEY:-true} \
	JWT_PROXY_BIN=$(BIN)/jwt-proxy JWT_PROXY_CONF=conf/jwt-proxy.yaml \
	SUPERVISOR_PID_FILE=run/supervisor.pid

# The demo upstream on 127.0.0.1:$(UPSTREAM_PORT) in the background, the proxy in the
# foreground under scripts/supervise.sh (so `make reload` can upgrade it); Ctrl-C stops both.
run: build
	@mkdir -p run; trap 'kill $$echo_pid 2>/dev/null; wait $$echo_pid 2>/dev/null' EXIT INT TERM; \
	$(BIN)/protected-echo --listen 127.0.0.1:$(UPSTREAM_PORT) & echo_pid=$$!; \
	$(RUN_ENV) scripts/supervise.sh

# Zero-downtime upgrade of the proxy started by `make run` (new binary, config, key or kid):
# returns when the new process serves and the old one has exited (exit 1 if it did not happen).
reload:
	@$(RUN_ENV) scripts/reload.sh

$(PY): tests/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	@touch $(PY)

test: test-deps $(PY)
	JWT_PROXY_PYTHON=$(abspath $(PY)) $(CARGO) test --release

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --all-targets -- -D warnings

# One request through the running proxy (started with `make run`).
client:
	@[ -x $(BIN)/jwt-post ] || $(CARGO) build --release --bin jwt-post
	$(BIN)/jwt-post http://127.0.0.1:$(HTTP_PORT)/ --user demo-user --data '{"hello":"world"}'

# The image and the compose stack, with Docker where its engine answers, else podman and
# podman-compose (scripts/container.sh; podman-compose comes from .venv). `make up` builds and
# starts the stack in the background; `make down` stops the proxy first (it drains), then the rest.
CONTAINER_DEPS = $(if $(shell scripts/container.sh engine 2>/dev/null | grep -x docker),,$(PY))
.SECONDEXPANSION:
docker-build:
	scripts/container.sh setup
	scripts/container.sh build

up: $$(CONTAINER_DEPS)
	scripts/container.sh up

down: $$(CONTAINER_DEPS)
	scripts/container.sh down

bench: deps
	$(CARGO) bench --bench mint

# Load tests against a running stack (see loadtest/README.md); `loadtest` starts one if needed.
loadtest: build
	loadtest/oha.sh

loadtest-k6: build $(PY)
	loadtest/k6-run.sh

compare: build
	loadtest/compare.sh

# Resident memory per idle keep-alive client connection: jwt-proxy, bare Pingora, HAProxy, nginx.
idle-memory: build
	loadtest/idle-memory.sh

# Instructions per request (callgrind): jwt-proxy, with and without its access log, and bare Pingora.
callgrind: build
	loadtest/callgrind.sh

# What each signing algorithm (HS512, EdDSA, ES256) costs the proxy per request, side by side.
compare-algs: build
	loadtest/compare-algs.sh

clean:
	$(CARGO) clean
	rm -rf $(VENV)

# Fuzz the parsers (bearer tokens, JSON identity, configuration) for FUZZ_SECS seconds each, on
# the stable toolchain (libFuzzer without a sanitizer). Crashes land in fuzz/artifacts/TARGET/.
FUZZ_SECS ?= 60
FUZZ_TARGETS := bearer json_identity config
fuzz: deps
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/corpus/$$t; \
	  echo "== fuzzing $$t for $(FUZZ_SECS) s"; \
	  $(CARGO) fuzz run -s none -O $$t fuzz/corpus/$$t fuzz/seeds/$$t -- \
	    -max_total_time=$(FUZZ_SECS) -max_len=16384 -print_final_stats=1 2>&1 \
	    | grep -E '^(Done|stat::number_of_executed_units|SUMMARY)|panicked|crash-' \
	    || true; \
	  if ls fuzz/artifacts/$$t/crash-* >/dev/null 2>&1; then echo "$$t: CRASHES in fuzz/artifacts/$$t"; exit 1; fi; \
	done

# Soak: 1,000,000 requests at 64 connections, proxy RSS sampled every second (outside CI).
soak: build
	loadtest/soak.sh
