# sipresponder — `make run` starts the responder, `make test` runs every test.
# Both create the virtualenv (.venv) and install the package into it when missing.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The protocol core compiled with mypyc (setup.py), built in place beside its sources.
CORE   := $(VENV)/.core-built
ARGS   ?=
# make bench BENCH_ARGS="--quick --targets responder" (or BENCH_SECONDS=2 make bench)
BENCH_ARGS ?=
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: core run test unit integration lint docs soak bench bench-media bench-web bench-ws bench-micro bench-instructions fuzz sipp clients tshark browser venv clean

run: $(CORE)
	$(BIN)/sipresponder $(ARGS)

# Every test against the compiled core, then the unit tests against the pure-Python one
# (what a machine without a C compiler runs).
test: $(CORE) sipp clients tshark browser lint
	$(BIN)/pytest -q tests
	SIPRESPONDER_PURE=1 $(BIN)/pytest -q tests/unit

unit: $(CORE)
	$(BIN)/pytest -q tests/unit

integration: $(CORE) sipp clients tshark browser
	$(BIN)/pytest -q tests/integration

lint: $(STAMP)
	$(BIN)/ruff check sipresponder tests bench fuzz setup.py
	$(BIN)/ruff format --check sipresponder tests bench fuzz setup.py
	$(BIN)/mypy --strict sipresponder
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir build/site

# The documentation site (mkdocs-material) into site/; --strict: a broken link or anchor,
# or a page left out of the nav, fails.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# Minutes of good calls (sipp), malformed traffic and a flood against one responder:
# every call completes, the flood is rate-limited, no memory or descriptor leak, no error
# logged.  SOAK_SECONDS=30 make soak for a short run.  Not part of `make test`.
soak: $(CORE) sipp
	$(BIN)/pytest -q -s -m soak tests/integration/test_soak.py

# SIPp against the responder, SIPp's own UAS and Kamailio (when installed): a few
# minutes; the table is printed, the JSON goes to bench/results/latest.json.
bench: $(CORE) sipp
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# Echoed RTP streams (50 packets/s each) against the responder and SIPp's -rtp_echo:
# loss and CPU per packet, a minute or two; JSON to bench/results/media.json.
bench-media: $(CORE) sipp
	$(BIN)/python bench/media.py $(BENCH_ARGS)

# The web view with a full journal (docs/benchmarks.md, "Web view").
bench-web: $(CORE) sipp browser
	$(BIN)/python bench/web.py $(BENCH_ARGS)

# SIP over secure WebSocket, the responder against Kamailio's websocket module, driven by
# a client of our own (SIPp has no WebSocket): about 1 min.
bench-ws: $(CORE)
	$(BIN)/python bench/ws.py $(BENCH_ARGS)

# Parse + respond per message in the core, no sockets: seconds.
bench-micro: $(CORE)
	$(BIN)/python bench/micro.py

# Instructions per operation of the core under valgrind (apt-get install valgrind): about
# a minute; unlike CPU time it does not move with the machine's load — compare changes by it.
bench-instructions: $(CORE)
	$(BIN)/python bench/instructions.py

# Coverage-guided fuzzing (atheris) of the parser and the TCP framer, FUZZ_SECONDS per
# target.  atheris is installed into the venv here, on demand (the 'fuzz' extra), never
# by `make test`.  New inputs go to build/fuzz/<target>/, a crash to build/fuzz/crash-*:
# replay it with `$(BIN)/python fuzz/fuzz_<target>.py build/fuzz/crash-...`, and copy it
# to tests/unit/fuzz_crashes/<target>/ to make it a regression test.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= parser framer

fuzz: $(CORE)
	@$(BIN)/python -c 'import atheris' 2>/dev/null || \
		$(BIN)/python -m pip install -q -e '.[fuzz]' || \
		echo "atheris did not install: the targets run a random mutation loop instead"
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p build/fuzz/$$t && echo "fuzzing $$t for $(FUZZ_SECONDS) s" && \
		$(BIN)/python fuzz/fuzz_$$t.py -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
			-max_len=8192 -dict=fuzz/sip.dict -print_final_stats=1 -artifact_prefix=build/fuzz/ \
			build/fuzz/$$t fuzz/corpus/$$t || exit 1; \
	done

venv: $(STAMP)

# The venv needs Python's venv module: Debian ships it as python3-venv.
$(BIN)/python:
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
		echo "installing python3-venv with apt-get"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq python3-venv; }
	$(PYTHON) -m venv $(VENV)

# Installed editable and uncompiled; $(CORE) compiles in place with the venv's mypyc.
$(STAMP): $(BIN)/python pyproject.toml setup.py
	$(BIN)/python -m pip install -q --upgrade pip
	SIPRESPONDER_PURE=1 $(BIN)/python -m pip install -q -e '.[dev,fast]'
	touch $(STAMP)

# Again whenever a source changes (the package would refuse a stale compiled module and
# run its sources).  Without a C compiler or Python headers it warns and stays pure Python.
$(CORE): $(STAMP) $(wildcard sipresponder/*.py sipresponder/*/*.py sipresponder/*/_c/*.c)
	SIPRESPONDER_PURE= $(BIN)/python setup.py -q build_ext --inplace
	touch $(CORE)

core: $(CORE)

# $(call need,COMMAND,PACKAGE): install Debian's PACKAGE when COMMAND is missing.
define need
	@command -v $(1) >/dev/null 2>&1 || { \
		echo "installing $(1) (Debian package $(2)) with apt-get"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(2); }
	@command -v $(1) >/dev/null 2>&1 || { echo "$(1) is still missing" >&2; exit 1; }
endef

# The integration tests drive the responder with the real sipp (Debian: sip-tester)...
sipp:
	$(call need,sipp,sip-tester)

# ... and with real SIP clients: baresip (Debian: baresip-core, no GUI); pyVoIP comes
# with the venv ('.[dev]'); JsSIP and SIP.js over WebSocket in Node (Debian: nodejs,
# npm), their versions locked in tests/node/package-lock.json.
NODE_CLIENTS := tests/node/node_modules/.package-lock.json

clients: $(NODE_CLIENTS)
	$(call need,baresip,baresip-core)

$(NODE_CLIENTS): tests/node/package.json tests/node/package-lock.json
	$(call need,node,nodejs)
	$(call need,npm,npm)
	cd tests/node && npm ci --no-audit --no-fund
	touch $@

# ... and read the calls they export as pcap with tshark (Debian: tshark, Wireshark's
# command line).
tshark:
	$(call need,tshark,tshark)

# ... and look at the admin server's web pages with a real browser: Debian's chromium,
# driven through its chromium-driver by selenium (from the venv; nothing downloaded).
browser:
	$(call need,chromium,chromium)
	$(call need,chromedriver,chromium-driver)

clean:
	rm -rf $(VENV) build site *.egg-info .mypy_cache .ruff_cache .pytest_cache
	rm -f sipresponder/*.so sipresponder/*/*.so sipresponder/*/_c/*.so
