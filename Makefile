# Greengrass Vision: the one entry point for people and CI.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Defined before `setup` names it: a prerequisite list is expanded when make reads the rule.
CDK_STAMP := $(VENV)/.installed-cdk
MODELS := build/model-store/index.json
COMPONENTS := components/com.custom.ImageClassifier components/com.custom.ObjectDetector components/com.custom.CameraSource components/com.custom.requester components/com.custom.LiveView
PKG_DIRS := src/ggvision $(foreach c,$(COMPONENTS),$(c)/src)
ROOT ?= /tmp/ggvision-$(shell id -u)

.PHONY: setup run test lint typecheck unit bench models build deploy-local samples clean models-dlr security lock synth models-detect

setup: $(STAMP) $(CDK_STAMP)  ## .venv with the library, every component (all backends), dev tools; mosquitto
	@command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || \
	  { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null); \
	    else echo "note: install mosquitto (Debian: apt-get install mosquitto) for the IoT Core bridge tests"; fi; }

$(STAMP): pyproject.toml $(foreach c,$(COMPONENTS),$(c)/pyproject.toml)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev,mqtt]' \
	  -e 'components/com.custom.ImageClassifier[tflite,onnx,torch,dlr]' \
	  -e 'components/com.custom.ObjectDetector[tflite,onnx]' \
	  -e 'components/com.custom.CameraSource[opencv]' \
	  -e components/com.custom.requester -e components/com.custom.LiveView
	touch $(STAMP)

# The CDK app's Python packages (the [cdk] extra) and the pinned CDK CLI (cdk/package.json).
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_DISABLE_CLI_TELEMETRY := true

$(CDK_STAMP): $(STAMP) pyproject.toml cdk/package.json cdk/package-lock.json
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev,mqtt,cdk]'
	@command -v npm >/dev/null || \
	  { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null); \
	    else echo "error: install Node.js and npm (Debian: apt-get install nodejs npm)" >&2; exit 1; fi; }
	cd cdk && npm ci --no-audit --no-fund --silent
	touch $(CDK_STAMP)

$(MODELS): modelbuild/*.py modelbuild/*.sh modelbuild/requirements*.txt
	bash modelbuild/build.sh

models: $(MODELS)  ## the model store, built offline in its own venv (build/venvs/models)

DLR_MODELS := build/model-store/dlr-fp32/.built

$(DLR_MODELS): $(MODELS) modelbuild/venv.sh modelbuild/dlr/*.py modelbuild/dlr/*.c modelbuild/dlr/*.sh modelbuild/dlr/requirements.txt
	bash modelbuild/dlr/build.sh

models-dlr: $(DLR_MODELS)  ## the DLR model (TVM 0.25, venv build/venvs/dlr; needs gcc) + AWS layout copy

DETECT_MODELS := build/detect-store/.built

$(DETECT_MODELS): modelbuild/venv.sh modelbuild/detect/*.py modelbuild/detect/*.sh modelbuild/detect/requirements*.txt
	bash modelbuild/detect/build.sh

models-detect: $(DETECT_MODELS)  ## the detection model store (TensorFlow + tf2onnx, venv build/venvs/detect; npm)

BUILT := greengrass-build/.built
BUILD_INPUTS := $(shell find src components tools/build_components.py tools/build-constraints.txt -type f \
  \( -name '*.py' -o -name '*.yaml' -o -name '*.json' -o -name '*.toml' -o -name '*.txt' \) \
  -not -path '*/greengrass-build/*' -not -path '*.egg-info/*' 2>/dev/null)

build: $(BUILT)  ## component artifacts + recipes/ (greengrass-cli layout)

$(BUILT): $(STAMP) $(MODELS) $(DETECT_MODELS) $(BUILD_INPUTS)
	$(BIN)/python tools/build_components.py
	touch $@

# make deploy-local                       every component, to the Greengrass core on this machine
# make deploy-local COMPONENTS_TO=...      only these (space-separated names)
# make deploy-local UPDATE_CONFIG=f.json   with a configuration update
# Without a Greengrass installation it prints the exact greengrass-cli command instead.
COMPONENTS_TO ?=
UPDATE_CONFIG ?=

deploy-local: build  ## greengrass-cli deployment create from recipes/ and greengrass-build/artifacts
	$(BIN)/python tools/deploy_local.py $(foreach c,$(COMPONENTS_TO),--component $(c)) \
	  $(if $(UPDATE_CONFIG),--update-config $(UPDATE_CONFIG))

lock: $(STAMP) $(MODELS)  ## record component versions + content fingerprints (components/versions.lock.json)
	$(BIN)/python tools/build_components.py --lock

# make synth                     offline, the context in cdk/cdk.json
# make synth CDK_ARGS="-c thingGroupName=MyGroup -c stage=prod"
CDK_ARGS ?=

synth: build $(CDK_STAMP)  ## cdk synth (offline) into cdk/cdk.out
	cd cdk && PATH="$(CURDIR)/$(BIN):$$PATH" npx --no-install cdk synth -q $(CDK_ARGS)

SAMPLES := build/samples/video.mp4

samples: $(SAMPLES)  ## sample photos and a sample video built from them (build/samples)

$(SAMPLES): tools/make_samples.py | $(STAMP)
	$(BIN)/python tools/make_samples.py build/samples

# make run                      the sample video, until Ctrl-C
# make run MAX_RESULTS=100      a bounded run
# make run CAMERA=/dev/video0   a V4L2/USB camera instead of the video
# make run TASK=detect          camera -> com.custom.ObjectDetector: the boxes of each frame
# make run CAMERAS=4            four sample cameras in one CameraSource (tools/run_cameras.py)
# make run LIVEVIEW_PORT=9000   the live view's port (default 8080; when it is taken, the next
#                               free one, and the run says so)
CAMERA ?=
CAMERAS ?=
MAX_RESULTS ?=
TASK ?= classify
LIVEVIEW_PORT ?= 8080
RUN_DETECT := $(filter detect,$(TASK))
RUN_CONFIG := examples/local-run$(if $(RUN_DETECT),-detect)$(if $(CAMERA),-v4l2).json
RUN_MODEL := $(if $(RUN_DETECT),com.custom.ObjectDetector,com.custom.ImageClassifier)

run: build samples  ## the whole suite on ggvision core: camera -> classifier (TASK=detect: detector) -> results, live view (Ctrl-C stops)
	@case "$(TASK)" in classify|detect) ;; *) echo "error: TASK is classify or detect" >&2; exit 2;; esac
	@port=$$($(BIN)/python -m ggvision_liveview.port $(LIVEVIEW_PORT)) || exit 2; \
	  sed -e 's|@SAMPLES@|$(CURDIR)/build/samples|g' -e 's|@CAMERA@|$(CAMERA)|g' \
	    -e "s|\"@LIVEVIEW_PORT@\"|$$port|g" $(RUN_CONFIG) > build/local-run.json; \
	  $(if $(CAMERAS),$(BIN)/python tools/run_cameras.py build/local-run.json $(CAMERAS) $(CURDIR)/build/samples || exit 2;) \
	  echo "live view: http://127.0.0.1:$$port/  (metrics: /metrics)"
	$(BIN)/ggvision core run --root $(ROOT) --recipe-dir recipes --artifact-dir greengrass-build/artifacts \
	  --skip-install --update-config build/local-run.json \
	  --component com.custom.CameraSource --component $(RUN_MODEL) \
	  --component com.custom.LiveView \
	  $(if $(RUN_DETECT),--watch-requests local/detect) \
	  --watch $(if $(MAX_RESULTS),--max-results $(MAX_RESULTS)) $(RUN_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench tools components modelbuild cdk
	$(BIN)/ruff format --check src tests bench tools components modelbuild cdk

typecheck: $(STAMP)
	$(BIN)/mypy $(PKG_DIRS)

unit: $(STAMP) $(CDK_STAMP) $(MODELS) $(BUILT) $(DLR_MODELS) $(DETECT_MODELS)
	GGV_REQUIRE_MODELS=1 GGV_REQUIRE_BUILD=1 $(BIN)/pytest -q $(PYTEST_ARGS)

# bandit over the shipped code; each `# nosec` carries its reason on the same line.
security: $(STAMP)  ## static security scan (bandit)
	$(BIN)/bandit -q -c pyproject.toml -r src $(foreach c,$(COMPONENTS),$(c)/src)

test: lint typecheck security unit  ## everything CI runs

# make bench                      every benchmark, then one report of ratios: build/bench/REPORT.md
# make bench BENCH=ipc,pipeline    only these (a comma list of bench/ modules); the report still
#                                  shows what earlier runs left in build/bench for the others
#                                  ("not run" where nothing is there)
BENCHES := ipc classifier pipeline detector liveview imprint multicamera
BENCH ?= $(subst $(eval) ,$(comma),$(BENCHES))
comma := ,

bench: $(STAMP) $(MODELS)  ## benchmarks (BENCH=name,name; default all), then build/bench/REPORT.md
	@for b in $(subst $(comma), ,$(BENCH)); do \
	  case " $(BENCHES) " in *" $$b "*) ;; \
	    *) echo "error: unknown benchmark '$$b' (known: $(BENCHES))" >&2; exit 2;; esac; \
	done
	@set -e; for b in $(subst $(comma), ,$(BENCH)); do echo "== bench.$$b"; $(BIN)/python -m bench.$$b; done
	$(BIN)/python -m bench.report

clean:
	rm -rf build greengrass-build .pytest_cache .mypy_cache .ruff_cache .hypothesis cdk/cdk.out
