# VeloZ: `make run` and `make test` do all the set-up on a fresh machine (Python >= 3.11 on PATH).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install browser run run-single test test-core lint bench lock clean

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

install: $(STAMP)

# The browser tests drive Debian's chromium through its chromedriver: installed from the system package manager
# (as root, or with sudo), never downloaded by a test tool.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null; }

# The main job: the trading engine with a simulated market, driven by the stdio protocol (see README), with the
# HTTP/WebSocket API and the monitoring page on 127.0.0.1:8080 (the URL with its token is printed on stderr).
run: install
	$(BIN)/veloz start --local --http 127.0.0.1:8080 $(ARGS)

run-single: install
	$(BIN)/veloz start --local --single-process $(ARGS)

test: install browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-core: install
	$(BIN)/python -m pytest tests/core tests/backtest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check veloz_actors tests scripts
	$(BIN)/ruff format --check veloz_actors tests scripts
	$(BIN)/mypy veloz_actors

bench: install
	$(BIN)/python scripts/bench_core.py

# Re-pin the full dependency set after changing pyproject.toml.
lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/pip install -q -e '.[dev]' && .lockenv/bin/pip freeze --exclude-editable > requirements.lock
	rm -rf .lockenv

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
