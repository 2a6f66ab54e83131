# jwt-proxy. `make run` and `make test` do all set-up a fresh machine needs.
HTTP_PORT ?= 8080
STATUS_PORT ?= 8081
UPSTREAM_PORT ?= 9000
CARGO ?= cargo
VENV := .venv
PY := $(VENV)/bin/python
BIN := target/release

export HTTP_PORT STATUS_PORT

.PHONY: deps build run reload test lint client clean docker-build up down loadtest loadtest-k6 bench compare

# System packages Pingora's build needs (zlib-ng is built with cmake).
deps:
	@command -v cmake >/dev/null 2>&1 || { \
	  echo "installing cmake (needed to build Pingora's zlib-ng)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq cmake >/dev/null; }

build: deps
	$(CARGO) build --release --bins

# The demo upstream on 127.0.0.1:$(UPSTREAM_PORT) in the background, the proxy in the
# foreground under scripts/supervise.sh (so `make reload` can upgrade it); Ctrl-C stops both.
run: build
	@mkdir -p run; trap 'kill $$echo_pid 2>/dev/null; wait $$echo_pid 2>/dev/null' EXIT INT TERM; \
	$(BIN)/protected-echo --listen 127.0.0.1:$(UPSTREAM_PORT) & echo_pid=$$!; \
	UPSTREAM_URL=$${UPSTREAM_URL:-http://127.0.0.1:$(UPSTREAM_PORT)/protected} \
	JWT_PROXY_BIN=$(BIN)/jwt-proxy JWT_PROXY_CONF=conf/jwt-proxy.yaml \
	SUPERVISOR_PID_FILE=run/supervisor.pid scripts/supervise.sh

# Zero-downtime upgrade of the proxy started by `make run` (new binary, config, key or kid).
reload:
	@scripts/reload.sh

$(PY): tests/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	@touch $(PY)

test: deps $(PY)
	JWT_PROXY_PYTHON=$(abspath $(PY)) $(CARGO) test --release

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --all-targets -- -D warnings

# One request through the running proxy (started with `make run`).
client:
	@[ -x $(BIN)/jwt-post ] || $(CARGO) build --release --bin jwt-post
	$(BIN)/jwt-post http://127.0.0.1:$(HTTP_PORT)/ --user demo-user --data '{"hello":"world"}'

docker-build:
	docker build -t jwt-proxy:latest .

up:
	docker compose up --build

down:
	docker compose down

bench: deps
	$(CARGO) bench --bench mint

# Load tests against a running stack (see loadtest/README.md); `loadtest` starts one if needed.
loadtest: build
	loadtest/oha.sh

loadtest-k6: build $(PY)
	loadtest/k6-run.sh

compare: build
	loadtest/compare.sh

clean:
	$(CARGO) clean
	rm -rf $(VENV)
