# The README's two commands: `make all` (the whole analysis) and `make test` (the test suite).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml | sha1sum | cut -c1-10)
DATASETS ?= ml-1m grocery
PROFILE  ?=

.PHONY: all test venv benchmark lab clean-runs

all: $(STAMP)
	$(PY) -m recsae_utils.pipeline $(DATASETS) $(if $(PROFILE),--profile $(PROFILE))

test: $(STAMP)
	$(PY) -m pytest tests

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-*
	touch $@

benchmark: $(STAMP)
	$(PY) benchmarks/bench_sasrec.py

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

clean-runs:
	rm -rf runs
