# Two entry points for a fresh machine (Python 3.11, git, the package registries):
#   make repro   install what is missing, then run the whole DVC pipeline on the embedded dataset
#   make test    install what is missing, then run the test suite
#   make table   the whole results table: every model of experiments/ on every fold (hours; README)
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
VENV ?= .venv
PY := $(VENV)/bin/python
# This machine's pip index prints one harmless warning per package it cannot browse; hide only those.
PIP_QUIET := 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
export DVC_NO_ANALYTICS := 1
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: install repro table test bench
install: $(VENV)/.installed

# torch/torchvision first: their wheels come from the machine's local index (stack.md).
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1 $(PIP_QUIET)
	$(PY) -m pip install -q -e '.[dev]' $(PIP_QUIET)
	$(PY) -m pip check
	touch $@

# Stage commands call `python`: put the venv first on PATH.
repro: install
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/dvc repro

# Every experiment file, the published rows in the paper's order and each added row (†) after the
# row it extends. `dvc exp run -S` writes this list into params.yaml's `models:`, so the report and a
# later `dvc repro` keep it.
TABLE_MODELS := yolox,retinanet,fcos,defcn,trackyolo,deformdetr,detr,deformdetr_align,transvod,cvanet,ptseformer,fasterrcnn,relationnet,fgfa,selsa,mega,basicdet,basicdet_poto,ultradet,ultradet_poto
# TABLE_ARGS: more `dvc exp run` options, e.g. the smoke profile (README).
TABLE_ARGS ?=
table: install
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/dvc exp run -S 'models=[$(TABLE_MODELS)]' $(TABLE_ARGS)

test: install
	$(VENV)/bin/pytest

bench: install
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b; done
