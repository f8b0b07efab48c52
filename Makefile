# PLADA edge. `make help` lists the targets. Every target creates what it needs from a clean clone.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
ORT_VENV := .venv-ort-training
ORT_PY := $(ORT_VENV)/bin/python
LITERT_VENV := .venv-litert
LITERT_PY := $(LITERT_VENV)/bin/python
PY310_VENV := .venv-py310
PY310_PY := $(PY310_VENV)/bin/python
# A Python 3.10 for the device-side unit tests: python3.10 on PATH if it really runs (a pyenv shim
# may not), else one of pyenv's installed versions. Empty when the machine has none.
ifeq ($(origin PYTHON310),undefined)
PYTHON310 := $(shell for p in python3.10 $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.10*/bin/python3.10 2>/dev/null); do $$p -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' 2>/dev/null && { echo $$p; break; }; done)
endif
PROFILE ?= full
# The small profile lives beside the full one so CI never clobbers a developer's full build.
DATA_DIR := $(if $(filter small,$(PROFILE)),data/small,data)
BUILD_DIR ?= build

.PHONY: help setup setup-ort-training setup-litert setup-py310 fmt lint typecheck test test-fast check data builder demo bench bench-codec bench-scale bench-corpus-scale bench-fleet soak trial trial-repeat clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-20s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, from the local CPU wheel: anything that asks for `torch` later is satisfied by it.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[agent,builder,dev,tflite]'
	touch $@

setup: $(VENV)/.installed ## create .venv and install everything (torch CPU wheel first)

# onnxruntime-training installs the same `onnxruntime` import package as plain onnxruntime, so it
# gets its own environment. onnx 1.17 because newer onnx writes optimizer graphs this ORT cannot load.
$(ORT_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(ORT_VENV)
	$(ORT_PY) -m pip install --quiet --upgrade pip
	$(ORT_PY) -m pip install --quiet onnxruntime-training==1.19.2 onnx==1.17.0 'numpy<2.3' pytest pytest-timeout hypothesis
	$(ORT_PY) -m pip install --quiet --no-deps -e .
	$(ORT_PY) -m pip install --quiet cbor2 zstandard cryptography pillow pydantic rich 'paho-mqtt>=2.2,<3' tomli-w \
		'prometheus-client>=0.20'
	touch $@

setup-ort-training: $(ORT_VENV)/.installed ## create .venv-ort-training (onnxruntime-training backend)

# litert-torch (torch -> .tflite without TensorFlow) pulls ~2.1 GB (jax, transformers, ...), so it
# gets its own environment (~2.6 GB, ~2 min from PyPI). torch first from the local CPU wheel, and
# repeated in each later install so no dependency can swap it for another build; everything else
# at the versions in litert-constraints.txt, which converted Lite0-64 to parity.
$(LITERT_VENV)/.installed: pyproject.toml litert-constraints.txt
	$(PYTHON) -m venv $(LITERT_VENV)
	$(LITERT_PY) -m pip install --quiet --upgrade pip
	$(LITERT_PY) -m pip install --quiet torch==2.13.0
	$(LITERT_PY) -m pip install --quiet -c litert-constraints.txt torch==2.13.0 litert-torch==0.10.0
	$(LITERT_PY) -m pip install --quiet -c litert-constraints.txt torch==2.13.0 -e '.[builder]' \
		pytest pytest-timeout hypothesis
	touch $@

setup-litert: $(LITERT_VENV)/.installed ## create .venv-litert (litert-torch: TFLite export)

# Device classes run the agent on Python 3.10 (Jetson: JetPack 6), so the agent's and plada's unit
# tests run there too, in an environment with the agent extra only (no torch, no builder).
$(PY310_VENV)/.installed: pyproject.toml
	@if [ -z "$(PYTHON310)" ]; then \
		echo "error: no Python 3.10 found (python3.10, or pyenv's versions/3.10*): install one or set PYTHON310=/path/to/python3.10" >&2; \
		exit 1; fi
	$(PYTHON310) -m venv $(PY310_VENV)
	$(PY310_PY) -m pip install --quiet --upgrade pip
	$(PY310_PY) -m pip install --quiet -e '.[agent]' pytest pytest-timeout hypothesis imagehash
	touch $@

setup-py310: $(PY310_VENV)/.installed ## create .venv-py310 (agent + plada unit tests on Python 3.10)

fmt: setup ## format and autofix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

lint: setup ## ruff format check + lint
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

typecheck: setup ## mypy --strict
	$(VENV)/bin/mypy

data: setup ## fetch the real datasets and build data/ref-v1 + data/targets (PROFILE=small for CI)
	$(PY) -m builder.datasets --profile $(PROFILE) --out $(DATA_DIR)

# The TFLite export tests run in .venv-litert; -p no:anyio because anyio's pytest plugin (pulled
# in there by transformers) imports a pytest name that warns, and warnings are errors here.
# Without a Python 3.10 on the machine the 3.10 run is skipped with a warning, except in CI.
test: setup setup-ort-training setup-litert ## the whole test suite, broker tests included (the README's test command)
	$(MAKE) data PROFILE=small
	$(PY) -m pytest -m 'not slow and not ort_training and not litert'
	$(ORT_PY) -m pytest -p no:cacheprovider -m ort_training tests/unit/agent
	$(LITERT_PY) -m pytest -p no:cacheprovider -p no:anyio -m litert tests/unit/builder
	@if [ -n "$(PYTHON310)" ] || [ "$${CI:-}" = true ]; then \
		$(MAKE) setup-py310 && \
		$(PY310_PY) -m pytest -p no:cacheprovider -m 'not slow and not ort_training and not litert and not torch and not data' tests/unit/agent tests/unit/plada; \
	else echo "warning: no Python 3.10 found; the agent's unit tests did not run on 3.10 (CI runs them)" >&2; fi

test-fast: setup ## unit tests only, no data or broker
	$(PY) -m pytest -m 'not slow and not ort_training and not litert and not broker and not data' tests/unit

check: lint typecheck test ## everything CI gates on

builder: data ## build payloads + reports for the three default targets under build/
	$(PY) -m tools.make_builder --data $(DATA_DIR) --out $(BUILD_DIR)

demo: data ## the main job: builder -> broker -> three agents -> table
	$(PY) -m tools.demo --data $(DATA_DIR) --out $(BUILD_DIR)/demo

bench-codec: setup ## codec table -> bench/results/codec.json
	$(PY) -m bench.codec --out bench/results/codec.json

# bench.device measures the ort-training head backend and exports lite0-64.tflite with these envs.
bench: data setup-ort-training setup-litert ## all benchmarks -> bench/results/, README Results section
	$(PY) -m bench.run --data $(DATA_DIR)

# bench.fleet alone (also a module of `make bench`): 100, 300 and 1,000 agents in a few worker
# processes against a mosquitto of its own; then the corpus-scale benchmark; then the README's
# Results are rendered from the JSON.
bench-scale: setup bench-corpus-scale ## fleet of 100-1,000 agents and corpora of 100k-1M images -> bench/results/fleet.json, corpus_scale.json, PNGs, README Results
	$(PY) -m bench.fleet --data $(DATA_DIR)
	$(PY) -m bench.run --render-only

# Derived corpora of 100k, 300k and 1M images (~4 GB, features ~7 GB, under SCALE_DIR) through
# build, verify, reads, embed, builder and agent apply; about an hour on 2 cores.
SCALE_DIR ?= build/corpus-scale
bench-corpus-scale: data ## corpora of 100k, 300k, 1M images -> bench/results/corpus_scale.json, .png, README Results
	test -f $(BUILD_DIR)/encoders/lite0-64-int8.onnx || \
		$(PY) -m builder export-encoder --model lite0 --size 64 --int8 --out $(BUILD_DIR)/encoders
	$(PY) -m bench.corpus_scale --data $(DATA_DIR) --work $(SCALE_DIR) --encoder-dir $(BUILD_DIR)/encoders
	$(PY) -m bench.run --render-only

# bench.run's fleet_targets module alone (also a module of `make bench`): --auto validating the
# four Lite device classes, views on, 3 tasks x 2 budgets x FLEET_SEEDS; each class's corpus
# embedding under every proposed view is cached under data/cache/embeddings (about an hour on 2
# cores the first time, 45 minutes warm).
FLEET_SEEDS ?= 0,1,2
bench-fleet: data ## --auto for the four Lite classes with views -> bench/results/fleet_targets.json, README Results
	$(PY) -m bench.run --data $(DATA_DIR) --only fleet_targets --seeds $(FLEET_SEEDS)

# The short version (a few minutes, 8 agents) runs inside `make test` (tests/integration/test_soak.py).
soak: setup ## 24 agent processes, 20 minutes of chaos -> bench/results/soak.json + README table
	nice -n 10 $(PY) -m bench.soak --out bench/results/soak.json --readme

# As root (network namespaces, tc, nft) with mosquitto installed. The first run exports the encoders
# and builds the task (cached in build/trial/); every run warms each class's feature cache before
# the timed part (10 devices over 4 profiles: under 10 minutes on 2 cores).
trial: data ## field trial: 10 agents on emulated thin links -> bench/results/trial.* + README
	nice -n 10 $(PY) -m tools.trial --data $(DATA_DIR) --out bench/results --readme

# The PLADA delivery on lora alone, 5 runs of 6 devices: the wire-bytes ratio as a distribution.
trial-repeat: data ## 5 x 6 PLADA deliveries on lora -> bench/results/trial_repeat.*
	nice -n 10 $(PY) -m tools.trial.repeat --runs 5 --data $(DATA_DIR) --out bench/results

clean: ## remove environments, caches and build outputs (keeps data/)
	rm -rf $(VENV) $(ORT_VENV) $(LITERT_VENV) $(PY310_VENV) $(BUILD_DIR) .mypy_cache .ruff_cache .pytest_cache .hypothesis
