# Transfer Learning Fundamentals: build the book, run the tests, work on the notebooks.
# Needs only python3 (3.10 or newer) and make: everything else is installed into .venv.
# `make` alone lists the targets.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Written after a successful install; pyproject.toml changing makes it stale.
STAMP := $(VENV)/.installed
SANITIZE := tests/nbval_sanitize.cfg
NOTEBOOKS ?= $(sort $(wildcard notebooks/*.ipynb)) book/knowledge_check.ipynb
BENCHMARKS ?= $(sort $(wildcard benchmarks/bench_*.py))

.DEFAULT_GOAL := help
.PHONY: help install book book-strict test test-unit test-notebooks lab execute bench gpu-check wheels list-notebooks set-repository sync-repository clean clean-all

help:
	@echo "make book         build the HTML book from the committed notebook outputs (_build/html)"
	@echo "make test         unit tests with coverage, then nbval re-runs every notebook"
	@echo "make lab          open JupyterLab on notebooks/"
	@echo "make execute      re-run every notebook in place (authors), then strip volatile metadata"
	@echo "                  (one notebook: make execute NOTEBOOKS=notebooks/01_....ipynb)"
	@echo "make bench        run benchmarks/bench_*.py"
	@echo "make gpu-check    on a CUDA machine: tests, then every notebook vs its committed CPU outputs"
	@echo "make book-strict  build the book from scratch with warnings as errors (as CI does)"
	@echo "make wheels       download into wheelhouse/ the wheels an offline GPU machine needs for gpu-check"
	@echo "make install      only create .venv and install the package with all its extras"
	@echo "make set-repository URL=https://github.com/ORG/NAME [BRANCH=main]"
	@echo "                  name your copy of the course in _config.yml, then point every notebook's"
	@echo "                  Colab badge and install cell at it (see \"Teach your own copy\" in README.md)"
	@echo "make sync-repository"
	@echo "                  after a version bump: rewrite the badges and install cells from _config.yml"
	@echo "make clean        remove _build and test caches; make clean-all also removes .venv"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || \
		{ echo "Python 3.10 or newer is needed; '$(PYTHON)' is older (try: make PYTHON=python3.11 ...)."; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[book,test,lab]'
	@touch $@

install: $(STAMP)

book: $(STAMP)
	$(BIN)/jupyter-book build .
	@echo
	@echo "The book is in _build/html. Open this file in a browser:"
	@echo "  file://$(CURDIR)/_build/html/index.html"

# Every page is rebuilt (--all) so that warnings of unchanged pages are not skipped.
book-strict: $(STAMP)
	$(BIN)/jupyter-book build . --all -W -n --keep-going

test: test-unit test-notebooks

# The unit tests, then every usage example in the companion's docstrings as a doctest.
test-unit: $(STAMP)
	$(BIN)/pytest tests/ companion/ --doctest-modules --cov=companion --cov-report=term

# First a check that each notebook was fully executed and carries no timing metadata (nbval skips
# cells that were never run), and that its quiz cells show the current question files
# (after editing one: python tools/refresh_quizzes.py NOTEBOOK). Then nbval re-executes each
# notebook in a fresh kernel of this
# environment and compares every text output with the committed one, after the substitutions
# listed in $(SANITIZE). The kernels run offline: PYTHONSTARTUP makes each one run
# tools/offline_kernel.py first, which refuses every connection except to loopback.
test-notebooks: $(STAMP)
ifeq ($(strip $(NOTEBOOKS)),)
	@echo "No notebooks in notebooks/ yet: nothing for nbval to check."
else
	$(BIN)/python tools/strip_volatile.py --check $(NOTEBOOKS)
	$(BIN)/python tools/refresh_quizzes.py --check $(NOTEBOOKS)
	PYTHONSTARTUP=$(CURDIR)/tools/offline_kernel.py $(BIN)/pytest --nbval --nbval-current-env --nbval-sanitize-with $(SANITIZE) $(NOTEBOOKS)
endif

# The notebooks that test-notebooks checks, one per line (.ci/run gives each its own timed step).
list-notebooks:
	@printf '%s\n' $(NOTEBOOKS)

# --allow-root only where make runs as root (containers, cloud machines): Jupyter refuses otherwise.
lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

execute: $(STAMP)
ifeq ($(strip $(NOTEBOOKS)),)
	@echo "No notebooks in notebooks/ yet: nothing to execute."
else
	$(BIN)/jupyter execute --inplace --timeout=600 $(NOTEBOOKS)
	$(BIN)/python tools/strip_volatile.py $(NOTEBOOKS)
endif

bench: $(STAMP)
ifeq ($(strip $(BENCHMARKS)),)
	@echo "No benchmarks/bench_*.py yet: nothing to run."
else
	@set -e; for script in $(BENCHMARKS); do \
		echo "== $$script"; $(BIN)/python $$script; \
	done
endif

# The CUDA path: unit tests, then each notebook executed (deterministic mode) and its printed
# numbers compared with the committed CPU outputs. Needs a GPU; see tools/gpu_check.py.
gpu-check: $(STAMP)
	$(BIN)/python tools/gpu_check.py

# For a machine without internet (a GPU box): the wheels of everything `make install` installs, at
# the versions installed here, torch and the CUDA libraries excepted (see tools/wheelhouse.py). There:
#   python3 -m venv --system-site-packages .venv && PIP_NO_INDEX=1 PIP_FIND_LINKS=$PWD/wheelhouse make gpu-check
wheels: $(STAMP)
	$(BIN)/python tools/wheelhouse.py --dest wheelhouse

# The repository and branch live in _config.yml alone; tools/set_repository.py derives each
# notebook's Colab badge and install cell from them (and from companion.__version__). It needs
# only python3, not .venv. `python3 tools/set_repository.py --check` lists what is out of date.
set-repository:
ifeq ($(strip $(URL)),)
	@echo "Usage: make set-repository URL=https://github.com/ORG/NAME [BRANCH=main]"; exit 1
else
	$(PYTHON) tools/set_repository.py --url '$(URL)' $(if $(strip $(BRANCH)),--branch '$(BRANCH)')
endif

sync-repository:
	$(PYTHON) tools/set_repository.py --sync

clean:
	rm -rf _build .pytest_cache .coverage htmlcov

clean-all: clean
	rm -rf $(VENV)
