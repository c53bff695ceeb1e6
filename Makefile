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

# Speed tables (run on a quiet machine; the SASRec and SAE ones need the ML-1M data / a finished run)
benchmark: $(STAMP)
	$(PY) benchmarks/bench_sasrec.py
	$(PY) benchmarks/bench_sae.py $(wildcard runs/ml-1m/hu/train.npy) --runs 1024:3e-3 --epochs 12 $(if $(wildcard runs/ml-1m/sasrec/seed0/sasrec.safetensors),--hu-from runs/ml-1m)
	$(PY) benchmarks/bench_concepts.py
	$(if $(wildcard runs/ml-1m/hu/train.npy),$(PY) benchmarks/bench_label_pool.py)
	$(PY) benchmarks/bench_labeling.py

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

clean-runs:
	rm -rf runs
