# Greengrass Vision: the one entry point for people and CI.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test lint typecheck unit bench models clean

setup: $(STAMP)  ## create .venv with the package, its dev tools and the MQTT bridge
	@command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || \
	  { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null); \
	    else echo "note: install mosquitto (Debian: apt-get install mosquitto) for the IoT Core bridge tests"; fi; }

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)  ## the local demo on ggvision core (Ctrl-C stops it)
	$(BIN)/ggvision core run --recipe-dir examples/hello/recipes --artifact-dir examples/hello/artifacts $(RUN_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q $(PYTEST_ARGS)

test: lint typecheck unit  ## everything CI runs

bench: $(STAMP)  ## benchmarks: ratios against baselines measured in the same run
	$(BIN)/python -m bench.ipc

models:  ## build the model store (own venv under build/venvs)
	bash modelbuild/build.sh

clean:
	rm -rf build greengrass-build .pytest_cache .mypy_cache .ruff_cache
