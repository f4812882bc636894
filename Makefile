# `make demo` and `make test` work on a fresh machine: each sets up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup clients demo test test-unit test-integration test-e2e models retrain evaluate evidence readme lint manifests serve clean

setup: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# The third-party Open Inference Protocol clients (NVIDIA's tritonclient, KServe's SDK) of tests/integration/test_conformance.py,
# in a venv of their own: kserve's dependencies must not enter the serving venv.
CLIENTS := .venv-clients
clients: $(CLIENTS)/.installed

$(CLIENTS)/.installed: loadtest/conformance-requirements.txt
	test -x $(CLIENTS)/bin/python || $(PYTHON) -m venv $(CLIENTS)
	$(CLIENTS)/bin/python -m pip install --quiet -r loadtest/conformance-requirements.txt
	touch $@

# Trains only the variants whose artifacts are missing, and builds the drift reference if it is missing.
models: setup
	$(BIN)/market-ab train --if-missing
	$(BIN)/market-ab reference --if-missing

retrain: setup
	$(BIN)/market-ab train

evaluate: setup
	$(BIN)/market-ab evaluate

demo: models
	$(BIN)/market-ab demo

test: setup models clients
	$(BIN)/python -m pytest

# One kind at a time (tests/conftest.py): unit tests and doctests (in process), then the real servers, then the
# demo, Locust, packaging and the docs' scripts.
test-unit: setup
	$(BIN)/python -m pytest tests/unit

test-integration: setup models clients
	$(BIN)/python -m pytest tests/integration

test-e2e: setup models clients
	$(BIN)/python -m pytest tests/e2e

lint: setup
	$(BIN)/ruff check .

# Render both Kustomize overlays and check them against Seldon's CRDs (../shared/reference or $$SELDON_CRDS).
manifests: setup
	$(BIN)/market-ab manifests check manifests/overlays/dev manifests/overlays/prod

# MLServer behind the local Seldon gateway on the dev overlay: REST 127.0.0.1:9000, gRPC 127.0.0.1:9001; Ctrl-C stops.
serve: models
	$(BIN)/market-ab serve

clean:
	rm -rf $(VENV) $(CLIENTS) .pytest_cache .ruff_cache *.egg-info

# Router and drift evidence (a few minutes each); rewrites docs/ and the README sections.
evidence: models
	$(BIN)/python -m seldon_market_ab.analysis.router_evidence
	$(BIN)/python -m seldon_market_ab.analysis.drift_evidence
	$(BIN)/market-ab readme

# Re-render the README's generated sections (data, features, evaluation, settings tables, evidence).
readme: setup
	$(BIN)/market-ab readme
