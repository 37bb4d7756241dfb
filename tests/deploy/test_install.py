"""The rendered recipes run unchanged on `ggvision core`, Install included.

`make build`'s recipes/ and greengrass-build/artifacts/ exactly as greengrass-cli would read them:
the runner unpacks the artifacts, runs each Install (a venv in the component's work directory,
our wheels from the artifact only, then the pinned closure from the package index) and Run in that
venv. The requester then sends two real photos to the classifier, which answers with the default
model from the model store component. Needs the package index (as a device does); the first run
on a fresh machine downloads the runtime wheels.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "greengrass-build"
RESULT = re.compile(r"^\s*(\d+)\s+([\d.]+) fps\s+([\d.]+|-) ms\s+(.*)$")
CLASSIFIER = "com.custom.ImageClassifier"
REQUESTER = "com.custom.requester"


@pytest.fixture()
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ggvinst", dir="/tmp"))  # short: socket paths
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_rendered_recipes_install_and_run_unchanged(root: Path, tmp_path: Path) -> None:
    if not (BUILD / ".built").exists():
        if os.environ.get("GGV_REQUIRE_BUILD"):
            pytest.fail("make build has not run (GGV_REQUIRE_BUILD is set)")
        pytest.skip("run `make build` first")
    skimage_data = pytest.importorskip("skimage.data")
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(skimage_data.chelsea()).save(images / "a-chelsea.jpg", quality=95)
    Image.fromarray(skimage_data.coffee()).save(images / "b-coffee.jpg", quality=95)
    out = tmp_path / "results.jsonl"
    config = {
        CLASSIFIER: {"MERGE": {"allowedDirectories": [str(images)], "threads": 1}},
        REQUESTER: {
            "MERGE": {"imageDirectory": str(images), "outputJsonl": str(out), "timeoutS": 120.0}
        },
    }
    env = {k: v for k, v in os.environ.items() if k != "GGV_PYTHON"}
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "ggvision"),
            "core",
            "run",
            "--root",
            str(root),
            "--recipe-dir",
            str(REPO / "recipes"),
            "--artifact-dir",
            str(BUILD / "artifacts"),
            "--update-config",
            json.dumps(config),
            "--component",
            REQUESTER,
            CLASSIFIER,
            "--watch",
            "--max-results",
            "2",
            "--max-runtime",
            "800",
            "--json",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=880,
    )
    logs = root / "logs"
    tail = "".join(
        f"\n--- {p.name}\n" + p.read_text(errors="replace")[-2000:] for p in logs.glob("*.log")
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:] + tail
    # Each Python component got its own venv in its work directory, with our package in it.
    for name, package in ((CLASSIFIER, "ggvision_classifier"), (REQUESTER, "ggvision_requester")):
        venv = root / "work" / name / "venv"
        assert (venv / "bin" / "python").exists(), name
        assert list(venv.glob(f"lib/python3*/site-packages/{package}/__init__.py")), name
    labels = [m.group(4) for m in map(RESULT.match, proc.stdout.splitlines()) if m]
    assert len(labels) == 2, proc.stdout[-2000:]
    assert not [x for x in labels if x.startswith("ERROR")], labels
    assert any("cat" in x for x in labels), labels
    assert any("espresso" in x for x in labels), labels
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert summary["reason"] == "max-results"
