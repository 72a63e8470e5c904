# make install     — create/refresh .venv from requirements.lock and install the project into it (editable)
# make test        — make install, then lint and run the whole test suite (what CI runs)
# make test-fast   — the unit tier only (no process launches, training runs or sandbox): the edit loop
# make quickstart  — the main job on a built-in default: corpus → tokenizer → MDS → train a tiny model on CPU → export → sample
# make bench       — the CPU benchmarks (model and trainer vs transformers' MPT; data prep vs raw sentencepiece)
# make lock        — re-resolve the dependencies of pyproject.toml and rewrite requirements.lock
# make mutation    — mutation testing (mutmut) of the modules whose bugs would be silent; report: docs/testing.md

PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
LOCK_HASH := $(shell cat requirements.lock | sha256sum | cut -c1-16)
STAMP := $(VENV)/.installed-$(LOCK_HASH)
PROJECT_STAMP := $(VENV)/.project-$(shell cat pyproject.toml | sha256sum | cut -c1-16)

.PHONY: install test test-fast lint format quickstart bench lock mutation

# pip runs through the venv's real path: console scripts (composer, ...) take it as their shebang, so a venv
# shared through a symlink (.ci/run) keeps working after the clone that installed it is gone.
$(STAMP): requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$$(readlink -f $(VENV))/bin/python -m pip install --quiet --upgrade pip
	$$(readlink -f $(VENV))/bin/python -m pip install --quiet -r requirements.lock
	rm -f $(VENV)/.installed-*
	touch $@

# The project is installed editable (a `git pull` needs no reinstall; the console scripts come from pyproject).
# It is reinstalled when pyproject.toml changed, or when the environment's `replitlm` is another clone's: CI
# shares one environment per lock between clones (.ci/run). The check runs from / so that the current folder
# does not shadow what is installed.
WHERE_INSTALLED := import importlib.util as u, sys; s = u.find_spec("replitlm"); \
	sys.exit(s is None or s.origin != "$(CURDIR)/replitlm/__init__.py")
install: $(STAMP)
	@if [ ! -e $(PROJECT_STAMP) ] || ! (cd / && $(abspath $(PY)) -c '$(WHERE_INSTALLED)'); then \
		echo "installing the project into $(VENV) (editable)"; \
		PYTHONWARNINGS=ignore $$(readlink -f $(VENV))/bin/python -m pip install --quiet --no-deps -e . \
		&& rm -f $(VENV)/.project-* && touch $(PROJECT_STAMP); \
	fi

test: install lint
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not integration and not slow"

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

quickstart: install
	$(PY) scripts/quickstart.py $(ARGS)

bench: install
	$(PY) scripts/bench/model_speed.py
	$(PY) scripts/bench/train_speed.py
	$(PY) scripts/bench/data_prep.py

lock:
	rm -rf /tmp/replitlm-lock && $(PYTHON) -m venv /tmp/replitlm-lock
	/tmp/replitlm-lock/bin/python -m pip install --quiet ".[dev]"
	/tmp/replitlm-lock/bin/python -m pip freeze --exclude-editable | grep -v '^replitlm' > requirements.lock

# mutmut's UI (textual) needs rich >= 14, which mosaicml-cli's pin refuses: it gets a venv of its own.
MUTATION_VENV ?= .venv-mutation
mutation:
	@test -x $(MUTATION_VENV)/bin/python || $(PYTHON) -m venv $(MUTATION_VENV)
	$(MUTATION_VENV)/bin/python -m pip install --quiet -r requirements.lock
	$(MUTATION_VENV)/bin/python -m pip install --quiet mutmut==3.8.1
	rm -rf mutants
	# one OpenMP thread: mutmut forks a child per mutant from a process that ran torch, and a fork of a process
	# whose OpenMP pool is running hangs at its next parallel op (a timeout, counted as a kill, hiding survivors)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 REPLITLM_SHARED=$${REPLITLM_SHARED:-$(CURDIR)/../shared} $(MUTATION_VENV)/bin/mutmut run $(MUTANTS) || true
	$(MUTATION_VENV)/bin/mutmut results
