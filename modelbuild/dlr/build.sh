#!/usr/bin/env bash
# `make models-dlr`: the DLR variant of the model store, compiled offline with TVM 0.25.
#
#   bash modelbuild/dlr/build.sh [STORE] [AWS_STORE]
#       STORE      default build/model-store (needs its onnx-fp32 variant: `make models`)
#       AWS_STORE  default build/aws-dlr-model-store (the same model in AWS's model-store layout)
#
# 1. creates/refreshes the venv build/venvs/dlr (only when missing or when
#    modelbuild/dlr/requirements.txt changed);
# 2. compiles STORE/onnx-fp32 into STORE/dlr-fp32 (+ index.json) and AWS_STORE/DLR-...
#    (compile_dlr.py), and STORE/onnx-fp32-embedding into STORE/dlr-fp32-embedding (weight
#    imprinting: docs/imprinting.md); each compile is skipped when its inputs' sha256 is the one
#    recorded in the variant (.inputs.sha256). Needs gcc. No network is used other than pip
#    installing from the registry.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STORE="${1:-$ROOT/build/model-store}"
AWS_STORE="${2:-$ROOT/build/aws-dlr-model-store}"
PYTHON="${PYTHON:-python3}"
VENV="$ROOT/build/venvs/dlr"
REQ="$ROOT/modelbuild/dlr/requirements.txt"
LOGDIR="$ROOT/build/logs"
# shellcheck source=modelbuild/venv.sh
. "$ROOT/modelbuild/venv.sh"
mkdir -p "$LOGDIR"
T_START=$(date +%s)

command -v gcc >/dev/null || { echo "models-dlr: gcc is needed to link the kernels" >&2; exit 2; }
for src in onnx-fp32 onnx-fp32-embedding; do
    [ -f "$STORE/$src/manifest.json" ] || {
        echo "models-dlr: $STORE/$src is missing: run \`make models\` first" >&2; exit 2; }
done

ensure_venv "$VENV" "$LOGDIR/dlr-pip.log" "$REQ"

"$VENV/bin/python" "$ROOT/modelbuild/dlr/compile_dlr.py" \
    --onnx-variant "$STORE/onnx-fp32" --store "$STORE" --aws-store "$AWS_STORE"
"$VENV/bin/python" "$ROOT/modelbuild/dlr/compile_dlr.py" \
    --onnx-variant "$STORE/onnx-fp32-embedding" --store "$STORE" --variant dlr-fp32-embedding
touch "$STORE/dlr-fp32/.built"
echo "models-dlr: done in $(( $(date +%s) - T_START )) s -> $STORE/dlr-fp32{,-embedding}, $AWS_STORE"
