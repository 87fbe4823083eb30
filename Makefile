# Quick start: `make demo` and `make test`; both install first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test test-slow lint clean

install: $(VENV)/.installed

# torch first, pinned: this version resolves to the CPU build here, so no CUDA wheels are pulled.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

demo: install
	$(BIN)/edgecomp run recipes/demo.yaml --root .

test: install lint
	$(BIN)/python -m pytest -q

# make test, plus the tests that export the real base to GGUF (a few minutes more)
test-slow: install lint
	EDGECOMP_SLOW_TESTS=1 $(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf runs .pytest_cache
