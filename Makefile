# The two commands that matter: `make repro` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# DVC runs each stage's `python …` through the shell: the venv must come first on PATH.
export PATH := $(CURDIR)/$(BIN):$(PATH)
# Hydra overrides for `make params`, e.g. `make repro OVERRIDES="experiment=smoke"`.
OVERRIDES ?=

.PHONY: setup setup-scancode bytecode params repro verify release test lint bench prune-work-cache clean-venv

setup: $(INSTALLED)

$(INSTALLED): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip==25.3
	$(BIN)/pip install -q -c requirements.lock -e '.[dev]'
	touch $(INSTALLED)

# The optional ScanCode license detector (`source.license_detector: scancode`; CI installs it to test it).
setup-scancode: $(INSTALLED)
	$(BIN)/pip install -q -c requirements.lock -e '.[dev,scancode]'

# Where PYTHONDONTWRITEBYTECODE is set, each stage process and each of its workers would compile
# starbuild's modules from source again (~25 ms a process); compiled once here, they load as bytecode.
bytecode: $(INSTALLED)
	$(BIN)/python -m compileall -q src stages

params: bytecode
	$(BIN)/python -m starbuild.core.config $(OVERRIDES)

repro: params
	$(BIN)/dvc repro
	$(BIN)/dvc status
	@echo "Evaluation (metrics/eval.json):"
	@awk '/^## Headline/{p=1;next} /^## /{p=0} p' reports/summary.md
	@echo "Every stage's counts: reports/summary.md (or \`dvc metrics show\` for all metrics files)."
	@echo "Dataset card: reports/dataset_card.md"
	@echo "Report: $(CURDIR)/reports/index.html"

# Rebuild every stage in a fresh clone of HEAD and compare each out's md5 with the committed dvc.lock.
verify: $(INSTALLED)
	$(BIN)/python -m starbuild.verify

# Push every out to the DVC remote and tag each dvc.yaml artifact `<name>@$(VERSION)`.
release: $(INSTALLED)
	@test -n "$(VERSION)" || { echo "error: release: give a version, e.g. make release VERSION=v0.1.0" >&2; exit 2; }
	$(BIN)/python -m starbuild.release $(VERSION)

lint: bytecode
	$(BIN)/ruff check src stages tests bench

test: lint
	$(BIN)/pytest -q

bench: bytecode
	$(BIN)/pip install -q -c requirements.lock -e '.[dev,bench]'
	$(BIN)/python bench/bench_hashing.py
	$(BIN)/python bench/bench_pinning.py
	$(BIN)/python bench/bench_pull.py
	$(BIN)/python bench/bench_filter.py
	$(BIN)/python bench/bench_html.py
	$(BIN)/python bench/bench_dedup.py
	$(BIN)/python bench/bench_clean.py
	$(BIN)/python bench/bench_tokenize.py
	$(BIN)/python bench/bench_train.py
	$(BIN)/python bench/bench_eval.py
	$(BIN)/python bench/bench_parallel_jobs.py
	$(BIN)/python bench/bench_scaling.py
	$(BIN)/python bench/bench_gpu_attention.py

# The work cache of interrupted data stages (src/starbuild/work_cache.py): print its size, then empty it.
prune-work-cache: $(INSTALLED)
	$(BIN)/python -m starbuild.work_cache --prune

clean-venv:
	rm -rf $(VENV)
