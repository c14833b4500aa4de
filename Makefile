# TorchServe handler and model-archive toolkit. Every target delegates to a script or tool.
# `make help` lists them. MODEL=<name> and VERSION=<v> narrow `make archive`.
.DEFAULT_GOAL := help
PY := .venv/bin/python
MODEL ?=
VERSION ?=

.PHONY: help install models archive serve stop status test test-unit test-integration test-e2e lint bench soak clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

install: ## create .venv with the pinned dependencies and generated gRPC stubs
	@bash scripts/install.sh

models: install ## train and export the example models into build/models/ (~2 min)
	@$(PY) -m examples.demo_models.build_models

archive: install ## validate config/models/*.yaml, preflight, write model_store/*.mar (MODEL=, VERSION=)
	@$(PY) -m toolkit.archive $(if $(MODEL),--model $(MODEL)) $(if $(VERSION),--version $(VERSION))

serve: ## set up, build, archive, start TorchServe on config/config.properties, print a prediction
	@bash scripts/serve.sh

stop: ## stop the server `make serve` started
	@bash scripts/stop.sh

status: ## models and workers of the running server
	@bash scripts/status.sh

test: ## unit, integration and e2e tests (builds what they need first)
	@bash scripts/test.sh tests

test-unit: install ## unit tests only
	@$(PY) -m pytest tests/unit

test-integration: ## archive tests only
	@bash scripts/test.sh tests/integration

test-e2e: ## tests against a real TorchServe only
	@bash scripts/test.sh tests/e2e

lint: install ## ruff
	@.venv/bin/ruff check handlers toolkit scripts tests

bench: ## benchmark the served models (writes bench/results/)
	@bash scripts/bench.sh

soak: ## long run at half capacity, reports memory growth (MINUTES=10)
	@bash scripts/soak.sh

clean: ## remove build outputs (keeps .venv)
	@rm -rf build model_store .ts_run
