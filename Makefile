# Greengrass Vision: the one entry point for people and CI.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODELS := build/model-store/index.json
COMPONENTS := components/com.custom.ImageClassifier components/com.custom.CameraSource components/com.custom.requester
PKG_DIRS := src/ggvision $(foreach c,$(COMPONENTS),$(c)/src)
ROOT ?= /tmp/ggvision-$(shell id -u)

.PHONY: setup run test lint typecheck unit bench models build deploy-local samples clean

setup: $(STAMP)  ## .venv with the library, every component (all backends), dev tools; mosquitto
	@command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || \
	  { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null); \
	    else echo "note: install mosquitto (Debian: apt-get install mosquitto) for the IoT Core bridge tests"; fi; }

$(STAMP): pyproject.toml $(foreach c,$(COMPONENTS),$(c)/pyproject.toml)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev,mqtt]' \
	  -e 'components/com.custom.ImageClassifier[tflite,onnx,torch]' \
	  -e 'components/com.custom.CameraSource[opencv]' \
	  -e components/com.custom.requester
	touch $(STAMP)

$(MODELS): modelbuild/*.py modelbuild/*.sh modelbuild/requirements*.txt
	bash modelbuild/build.sh

models: $(MODELS)  ## the model store, built offline in its own venv (build/venvs/models)

build: $(STAMP) $(MODELS)  ## component artifacts + recipes/ (greengrass-cli layout)
	$(BIN)/python tools/build_components.py

samples: $(STAMP)  ## sample photos and a sample video built from them (build/samples)
	$(BIN)/python tools/make_samples.py build/samples

run: build samples  ## the whole suite on ggvision core: camera -> classifier -> results (Ctrl-C stops)
	$(BIN)/ggvision core run --root $(ROOT) --recipe-dir recipes --artifact-dir greengrass-build/artifacts \
	  --skip-install --update-config examples/local-run.json \
	  --component com.custom.CameraSource --component com.custom.ImageClassifier $(RUN_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench tools components modelbuild
	$(BIN)/ruff format --check src tests bench tools components modelbuild

typecheck: $(STAMP)
	$(BIN)/mypy $(PKG_DIRS)

unit: $(STAMP) $(MODELS)
	GGV_REQUIRE_MODELS=1 $(BIN)/pytest -q $(PYTEST_ARGS)

test: lint typecheck unit  ## everything CI runs

bench: $(STAMP) $(MODELS)  ## benchmarks: ratios against baselines measured in the same run
	$(BIN)/python -m bench.ipc
	$(BIN)/python -m bench.pipeline

clean:
	rm -rf build greengrass-build .pytest_cache .mypy_cache .ruff_cache .hypothesis
