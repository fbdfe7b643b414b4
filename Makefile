# Every target creates .venv and installs what it needs if it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The install compiles rating/ and the core's logic with mypyc (setup.py, COMPILED); the compiled
# modules sit beside the .py files and would shadow them, so any change to them or to the build
# reinstalls.
# OCS_PURE=1 installs the pure-Python rating engine instead; each build kind has its own stamp,
# so switching between them reinstalls too.
ifeq ($(filter-out 0,$(strip $(OCS_PURE))),)
STAMP := $(VENV)/.installed
else
STAMP := $(VENV)/.installed-pure
endif
BUILD_INPUTS := pyproject.toml setup.py $(wildcard rating/*.py) ocs/core/charging.py ocs/core/ledger.py ocs/core/due.py

.PHONY: demo test check bench serve clean fuzz interop

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): $(BUILD_INPUTS) | $(PY)
	rm -f $(VENV)/.installed $(VENV)/.installed-pure
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m ocs.tools.demo

test: $(STAMP)
	$(PY) -m pytest -q

check: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) -m bench

# Targeted mutation testing of the money paths (docs/testing.md): each mutant applied to a copy
# of the tree, the tests that should notice it run (pure build). MUTANTS="name ..." runs some.
.PHONY: mutate
mutate: $(STAMP)
	OCS_PURE=1 $(PY) -m bench.mutate $(MUTANTS)

# The deterministic simulator (docs/vopr.md): seeds SEED, SEED+1, ... until SECONDS have passed
# (default: a random first seed, printed), with the hostile classes HOSTILE (default: all); every
# failing seed is reported with its reproduction, and the exit status says whether one failed.
SECONDS ?= 60
HOSTILE ?= all
# Erlang/OTP diameter (RFC 4006 dictionary from OTP's examples) and tshark, from Debian
# packages, against the real server: tests/interop/test_erlang_tshark.py (docs/interop.md).
INTEROP_DEBS = tshark erlang-base erlang-diameter erlang-dev erlang-examples
interop: $(STAMP)
	@if ! dpkg -s $(INTEROP_DEBS) >/dev/null 2>&1; then \
	  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends $(INTEROP_DEBS); fi
	OCS_INTEROP=1 $(PY) -m pytest -q tests/interop

fuzz: $(STAMP)
	$(PY) -m tests.vopr $(if $(SEED),--seed $(SEED)) --seconds $(SECONDS) --hostile $(HOSTILE) --keep-going $(if $(STEPS),--steps $(STEPS))

serve: $(STAMP)
	$(VENV)/bin/ocs serve

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build
	rm -f rating/*.so ocs/*.so ocs/*/*.so rating__mypyc*.so
