# jwt-proxy. `make run` and `make test` do all set-up a fresh machine needs.
HTTP_PORT ?= 8080
STATUS_PORT ?= 8081
UPSTREAM_PORT ?= 9000
CARGO ?= cargo
VENV := .venv
PY := $(VENV)/bin/python
BIN := target/release

export HTTP_PORT STATUS_PORT

.PHONY: deps build run test lint client clean

# System packages Pingora's build needs (zlib-ng is built with cmake).
deps:
	@command -v cmake >/dev/null 2>&1 || { \
	  echo "installing cmake (needed to build Pingora's zlib-ng)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq cmake >/dev/null; }

build: deps
	$(CARGO) build --release --bins

# The demo upstream on 127.0.0.1:$(UPSTREAM_PORT) in the background, the proxy in the
# foreground; Ctrl-C stops both.
run: build
	@trap 'kill $$echo_pid 2>/dev/null; wait $$echo_pid 2>/dev/null' EXIT INT TERM; \
	$(BIN)/protected-echo --listen 127.0.0.1:$(UPSTREAM_PORT) & echo_pid=$$!; \
	UPSTREAM_URL=$${UPSTREAM_URL:-http://127.0.0.1:$(UPSTREAM_PORT)/protected} \
	  $(BIN)/jwt-proxy -c conf/jwt-proxy.yaml

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

clean:
	$(CARGO) clean
	rm -rf $(VENV)
