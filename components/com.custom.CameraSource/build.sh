#!/usr/bin/env bash
# GDK custom build of com.custom.CameraSource (`gdk component build` runs it in this folder).
#
# The same artifact as `make build` (tools/build_components.py), for this component only, where
# GDK looks for it:
#   greengrass-build/artifacts/com.custom.CameraSource/<version>/camera.zip
#       (the ggvision and ggvision-camera wheels and a pinned requirements.txt)
#   greengrass-build/recipes/recipe.yaml
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PY="${PYTHON:-python3}"

rm -rf "$HERE/greengrass-build"
mkdir -p "$HERE/greengrass-build/recipes"
cd "$ROOT"
"$PY" - "$HERE" <<'PYTHON'
import sys
from pathlib import Path

import yaml

from tools.build_components import build_python_component, zip_artifacts

here = Path(sys.argv[1])
recipe = yaml.safe_load((here / "recipe.yaml").read_text())
name, version = recipe["ComponentName"], str(recipe["ComponentVersion"])
for zip_name in zip_artifacts(recipe):
    out = here / "greengrass-build" / "artifacts"
    print("built", build_python_component(here, name, version, zip_name, out))
PYTHON
cp "$HERE/recipe.yaml" "$HERE/greengrass-build/recipes/recipe.yaml"
