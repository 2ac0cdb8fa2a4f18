# rsyncd-py: `make serve` and `make test` set everything up from a fresh clone.
#
#   make serve   install what is missing (apt packages, .venv), start the SSH server
#   make test    the same set-up, then ruff and the whole suite (soak tests excluded)
#   make soak    only the long soak tests
#   make bench   the benchmarks (bench/)
#   make lint    ruff only
#   make clean   remove .venv and build output
#
# Run as root on Debian (or with sudo available): tools/setup-system.sh installs the
# missing Debian packages. Arguments for the server or pytest go in SERVE_ARGS and
# PYTEST_ARGS, e.g. `make test PYTEST_ARGS='-k ssh -x'`.
PYTHON      ?= python3
VENV        := .venv
BIN         := $(VENV)/bin
STAMP       := $(VENV)/.installed
PYTEST_ARGS ?=
SERVE_ARGS  ?=
# pytest-xdist workers: the suite is sized for 2 cores.
WORKERS     ?= 2

.PHONY: setup system serve test soak bench lint clean

setup: system $(STAMP)

system:
	@bash tools/setup-system.sh

# Rebuilt when pyproject.toml changes; the stamp is written only after a full install.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else \
		"rsyncd-py needs Python >= 3.11, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,fuse]'
	touch $(STAMP)

serve: setup
	$(BIN)/rsyncd-py serve $(SERVE_ARGS)

test: setup
	$(BIN)/ruff check .
	$(BIN)/pytest -n $(WORKERS) $(PYTEST_ARGS)

soak: setup
	$(BIN)/pytest -m soak $(PYTEST_ARGS)

bench: setup
	$(BIN)/python -m bench

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
