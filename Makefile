# Quick start: `make demo` (runs the Ni example) and `make test` (lint, format check, the suite
# with its import-layer contracts).
# Both create .venv from scratch when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-full test test-slow install clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt scripts/install-gpaw scripts/gpaw-siteconfig.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, from the CPU wheel; everything else is constrained to keep it.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	# GPAW (the DFT reference of low2high): Debian's libxc, OpenBLAS, FFTW, then a serial build.
	scripts/install-gpaw $(VENV)
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/potstill run examples/nickel.yaml --out runs/nickel --overwrite

demo-full: $(STAMP)
	$(BIN)/potstill run examples/nickel-full.yaml --out runs/nickel-full --overwrite

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	url=$$(scripts/postgres-test-server) && POTSTILL_TEST_POSTGRES_URL="$$url" $(BIN)/python -m pytest -q

test-slow: $(STAMP)
	url=$$(scripts/postgres-test-server) && POTSTILL_TEST_POSTGRES_URL="$$url" $(BIN)/python -m pytest -q -m slow

clean:
	rm -rf $(VENV) runs .pytest_cache
