# TorchServe handler and model-archive toolkit. Make owns the build graph: each file below is rebuilt when one of
# its inputs is newer, and only then (`make -n serve` prints the plan). Every recipe is one call of a script or tool.
# `make help` lists the targets and the variables they read.
.DEFAULT_GOAL := help
PY := .venv/bin/python
MODEL ?=
VERSION ?=

# --- the build graph -----------------------------------------------------------------------------------------
VENV := .venv/.installed
GRPC_STUBS := toolkit/client/grpc_gen/__init__.py
# What a demo-model build runs: its own module examples/demo_models/<name>.py, the shared training and export
# code, and (below) what one model alone uses. One `build_models --only <name>` run rewrites build/models/<name>/
# whole; its .built stamp marks it complete.
DEMO_SHARED := examples/demo_models/build_models.py examples/demo_models/training.py \
	$(wildcard toolkit/export/*.py) toolkit/paths.py
DEMO_MODELS := mnist tabular resnet18 fortunes digit_detector digit_segmenter
FORTUNES := /usr/share/games/fortunes
MODEL_BUILDS := $(DEMO_MODELS:%=build/models/%/.built)
ARCHIVES := $(patsubst config/models/%.yaml,model_store/%.mar,$(wildcard config/models/*.yaml))
# What each archive was made of, written by the archive tool beside it (model_store/<name>.mar.d, make's
# auto-dependency idiom): its YAML, model file (or the demo model's .built stamp), labels, samples, extra files,
# handler module, the handlers package and the archive tool's own modules. Before an archive's first build
# there is none: its YAML and the demo models (order-only) are enough.
-include $(wildcard model_store/*.mar.d)

# The venv is an order-only prerequisite of models and archives: reinstalling it (any pyproject.toml edit)
# retrains and re-archives nothing.
$(VENV): pyproject.toml
	@bash scripts/install.sh

$(GRPC_STUBS): $(wildcard proto/*.proto) scripts/gen_grpc.py $(VENV)
	@$(PY) scripts/gen_grpc.py && touch $@

build/models/%/.built: examples/demo_models/%.py $(DEMO_SHARED) | $(VENV)
	$(PY) -m examples.demo_models.build_models --only $* && touch $@
# The digit generator (digits, fonts, pen strokes) feeds the classifier and the scene models alike.
DIGIT_GENERATOR := $(addprefix examples/demo_models/,digits.py fonts.py strokes.py handwriting.py) handlers/imaging.py
SCENE_SHARED := $(addprefix examples/demo_models/,scenes.py scene_training.py scene_metrics.py scene_export.py)
build/models/mnist/.built: $(DIGIT_GENERATOR)
build/models/digit_detector/.built build/models/digit_segmenter/.built: $(DIGIT_GENERATOR) $(SCENE_SHARED)
build/models/resnet18/.built: handlers/imaging.py handlers/config.py
build/models/fortunes/.built: | $(FORTUNES)/computers
$(FORTUNES)/%:
	@bash scripts/require_fortunes.sh

model_store/%.mar: config/models/%.yaml | $(VENV) $(MODEL_BUILDS)
	$(PY) -m toolkit.archive --model $*

# --- targets ---------------------------------------------------------------------------------------------------
.PHONY: help install models archive serve stop status test test-unit test-integration test-e2e lint bench soak clean monitor monitor-stop image image-serve image-stop kserve-layout kserve-client ray-serve ray-stop ray-status test-cluster test-container

help: ## list the targets and the variables they read
	@grep -hE '^[a-z0-9-]+:.*## ' $(firstword $(MAKEFILE_LIST)) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'
	@grep -hE '^#= ' $(firstword $(MAKEFILE_LIST)) | cut -c4-

#= variables (make VAR=value target, or the environment):
#=   MODEL=<name> VERSION=<v>  archive: one model; VERSION other than the YAML's writes model_store/<name>_v<v>.mar
#=   DRAIN_DEADLINE_S=30       stop: seconds to wait for queued and running requests (0: stop at once)
#=   BENCH_ARGS="--quick"      bench: extra `python -m toolkit.bench` flags (--quick, --url URL, --out-dir DIR, ...)
#=   MINUTES=10 RATE=<req/s>   soak: duration, and load (default: half the measured capacity)
#=   MONITOR_PORT=9090         monitor, monitor-stop: Prometheus's loopback port
#=   KSERVE_ARGS="--use mnist_v2.0.mar --out build/kserve-canary"  kserve-layout: another version's layout

install: $(VENV) $(GRPC_STUBS) ## .venv with every extra (pyproject.toml, pins) and the generated gRPC stubs

models: $(MODEL_BUILDS) ## train and export the example models into build/models/ (~11 min on an idle 2-core machine, when their code changed)

archive: $(if $(MODEL),model_store/$(MODEL).mar,$(ARCHIVES)) ## validate, preflight, write stale model_store/*.mar (MODEL=, VERSION=)
	$(if $(VERSION),$(PY) -m toolkit.archive$(if $(MODEL), --model $(MODEL)) --version $(VERSION))

serve: $(ARCHIVES) ## rebuild what changed, start TorchServe on config/config.properties, print a prediction
	@bash scripts/serve.sh

stop: ## drain (DRAIN_DEADLINE_S, default 30), then stop the server `make serve` started
	@bash scripts/stop.sh

status: ## models and workers of the running server
	@bash scripts/status.sh

monitor: ## Prometheus on 127.0.0.1:9090 scraping the `make serve` server (installs Debian's prometheus if missing)
	@bash scripts/monitor.sh

monitor-stop: ## stop the Prometheus `make monitor` started
	@bash scripts/monitor.sh stop

test: $(ARCHIVES) $(GRPC_STUBS) .venv-kserve/.installed ## all six tiers: unit, integration, manifests, e2e, cluster, container (~18 min once models are built)
	@bash scripts/test.sh tests

test-unit: $(VENV) $(GRPC_STUBS) ## unit tests only (no models, Java or wrk)
	@$(PY) -m pytest tests/unit

test-integration: $(ARCHIVES) $(GRPC_STUBS) ## archive, model and Makefile tests (no Java or wrk)
	@$(PY) -m pytest tests/integration

test-e2e: $(ARCHIVES) $(GRPC_STUBS) .venv-kserve/.installed ## tests against a real TorchServe only (Java 17, wrk, prometheus: installed as root)
	@bash scripts/test.sh tests/e2e

lint: $(VENV) ## ruff check, the complexity gate (xenon: no block worse than C), the import contracts (lint-imports)
	@bash scripts/lint.sh

bench: $(ARCHIVES) $(GRPC_STUBS) ## benchmark the served models, writes bench/results/ (BENCH_ARGS=)
	@bash scripts/bench.sh

soak: $(ARCHIVES) ## long run at half capacity, reports memory growth (MINUTES=10, RATE=)
	@bash scripts/soak.sh

ray-serve: $(ARCHIVES) ## two-node local Ray cluster, every archive on 127.0.0.1:8000 (keys .ray_run/); RAY_ADDRESS=
	@bash scripts/ray_serve.sh

ray-stop: ## stop the ray-serve deployments and both nodes (by their pids)
	@$(PY) -m toolkit.engines.ray stop --run-dir .ray_run

ray-status: ## nodes and replicas of the ray-serve cluster
	@$(PY) -m toolkit.engines.ray status --run-dir .ray_run || true

test-cluster: $(ARCHIVES) ## Ray Serve engine tests on a two-node local cluster of their own
	@$(PY) -m pytest tests/cluster

test-container: $(ARCHIVES) .venv-kserve/.installed ## container tier: build the image and run it (podman or docker)
	@$(PY) -m pytest tests/container

image: $(ARCHIVES) ## container image ts-toolkit:<version> and :latest (podman or docker; deploy/container/)
	@bash scripts/image.sh

image-serve: ## run the image detached on the config's ports (127.0.0.1), key file in .image_run/
	@bash scripts/image-serve.sh

image-stop: ## stop the image-serve container: drain (TS_DRAIN_DEADLINE_S 20), exit 0
	@bash scripts/image-stop.sh

kserve-layout: $(ARCHIVES) ## KServe storage layout build/kserve/ (config/ + model-store/) from model_store/ (KSERVE_ARGS=)
	$(PY) -m toolkit.archive.kserve --out build/kserve $(KSERVE_ARGS)

kserve-client: .venv-kserve/.installed ## separate venv with KServe's Python client (its pins clash with ours)

.venv-kserve/.installed: tests/e2e/kserve-client-requirements.txt
	@$(PY) -m venv .venv-kserve && .venv-kserve/bin/pip install -q -r $< && touch $@

clean: ## remove build outputs (keeps .venv)
	@rm -rf build model_store .ts_run
