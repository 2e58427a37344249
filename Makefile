# inferline: the commands a newcomer needs. Everything installs itself on first use.
#   make demo    bring the platform up on 127.0.0.1 and walk through the online loop
#   make test    run every test tier (unit, integration over HTTP, infrastructure)
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.8
export UV_PYTHON_DOWNLOADS := never
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: setup browser up demo demo-retrain demo-monitor down test test-unit test-integration test-infra lint api-docs fuzz synth bench bench-monitoring clean

setup: $(VENV)/.installed $(if $(wildcard package.json),node_modules/.installed)

$(VENV)/.installed: pyproject.toml uv.lock
	@python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	python3 -m uv sync --frozen
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

# The monitoring report's browser test renders it in Debian's headless chromium.
browser:
	@command -v chromium >/dev/null || { $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && \
	  $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq chromium fonts-dejavu-core; }

up: setup            ## run the platform in the foreground (Ctrl-C stops it)
	$(BIN)/inferline up

demo: setup          ## start the platform in the background and walk through the loop
	$(BIN)/inferline demo

demo-retrain: setup  ## a retraining cycle: drift, feedback, promote, reject, rollback
	$(BIN)/inferline demo-retrain

demo-monitor: setup  ## monitoring: a normal day, drift, the alarm, early retraining, healthy again
	$(BIN)/inferline demo-monitor

down:                ## stop a platform started by `make demo` / `inferline up --detach`
	$(BIN)/inferline down

test: setup browser  ## every tier; the same command CI runs
	$(BIN)/pytest

test-unit: setup browser
	$(BIN)/pytest tests/unit

test-integration: setup
	$(BIN)/pytest tests/integration

test-infra: setup
	$(BIN)/pytest tests/infra

lint: setup
	$(BIN)/ruff check .

fuzz: setup          ## the long fuzz run: ~20,000 requests from the OpenAPI document against a local platform
	FUZZ_MAX_EXAMPLES=3500 FUZZ_MIN_REQUESTS=20000 $(BIN)/pytest -p no:cacheprovider tests/integration/test_fuzz_api.py -s

api-docs: setup      ## rewrite docs/openapi.json and docs/api.md from the API contract
	$(BIN)/inferline api-docs

synth: setup         ## synthesize the CloudFormation template offline
	npx cdk synth --quiet

bench: setup         ## serving benchmark (installs mlflow into bench/.venv-mlflow for the peer)
	bash bench/setup_mlflow.sh
	$(BIN)/python bench/bench_serving.py

bench-monitoring: setup  ## one monitoring run over a day of 1,000,000 logged predictions
	$(BIN)/python bench/bench_monitoring.py

clean:
	rm -rf $(VENV) node_modules cdk.out .pytest_cache
