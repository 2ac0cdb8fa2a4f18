# rsyncd-py: `make serve` and `make test` set everything up from a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup system serve test soak bench lint clean

setup: system $(STAMP)

system:
	@bash tools/setup-system.sh

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,fuse]'
	touch $(STAMP)

serve: setup
	$(BIN)/rsyncd-py serve

test: setup
	$(BIN)/ruff check .
	$(BIN)/pytest -n 2 $(PYTEST_ARGS)

soak: setup
	$(BIN)/pytest -m soak $(PYTEST_ARGS)

bench: setup
	$(BIN)/python -m bench

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
