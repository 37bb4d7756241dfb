#!/usr/bin/env bash
# GDK custom build for any component of this repository: `gdk component build`, run in
# components/<name>/, calls `bash ../../tools/gdk_build.sh` (see its gdk-config.json).
#
# The same artifacts as `make build` (tools/build_components.py), for this component only, where
# GDK looks for them:
#   components/<name>/greengrass-build/artifacts/<name>/<version>/<zip>
#   components/<name>/greengrass-build/recipes/recipe.yaml
# PYTHON (default: the repository's .venv, else python3) must have the components installed
# (`make setup`); the model store needs `make models` first.
set -euo pipefail
HERE="$(pwd)"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NAME="$(basename "$HERE")"
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
[ -f "$HERE/recipe.yaml" ] || { echo "gdk_build.sh: run it in a component folder" >&2; exit 2; }
rm -rf "$HERE/greengrass-build"
"$PYTHON" "$ROOT/tools/build_components.py" --component "$NAME" \
  --out "$HERE/greengrass-build/artifacts" --recipes "$HERE/greengrass-build/recipes" \
  --recipe-name recipe.yaml
