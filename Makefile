# sipresponder — `make run` starts the responder, `make test` runs every test.
# Both create the virtualenv (.venv) and install the package into it when missing.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=
# make bench BENCH_ARGS="--quick --targets responder" (or BENCH_SECONDS=2 make bench)
BENCH_ARGS ?=
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test unit integration lint bench bench-micro sipp venv clean

run: $(STAMP)
	$(BIN)/sipresponder $(ARGS)

test: $(STAMP) sipp lint
	$(BIN)/pytest -q tests

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

integration: $(STAMP) sipp
	$(BIN)/pytest -q tests/integration

lint: $(STAMP)
	$(BIN)/ruff check sipresponder tests bench
	$(BIN)/ruff format --check sipresponder tests bench
	$(BIN)/mypy --strict sipresponder

# SIPp against the responder, SIPp's own UAS and Kamailio (when installed): a few
# minutes; the table is printed, the JSON goes to bench/results/latest.json.
bench: $(STAMP) sipp
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# Parse + respond per message in the core, no sockets: seconds.
bench-micro: $(STAMP)
	$(BIN)/python bench/micro.py

venv: $(STAMP)

# The venv needs Python's venv module: Debian ships it as python3-venv.
$(BIN)/python:
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
		echo "installing python3-venv with apt-get"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq python3-venv; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,fast]'
	touch $(STAMP)

# The integration tests drive the responder with the real sipp (Debian: sip-tester).
sipp:
	@command -v sipp >/dev/null 2>&1 || { \
		echo "installing sipp (Debian package sip-tester) with apt-get"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq sip-tester; }
	@command -v sipp >/dev/null 2>&1 || { echo "sipp is still missing" >&2; exit 1; }

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
