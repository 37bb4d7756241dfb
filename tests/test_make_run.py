"""`make run`, the newcomer's first command: the built suite classifies the sample video.

Runs the real Makefile target (bounded with MAX_RESULTS) on the recipes and artifacts of
`make build`: CameraSource plays build/samples/video.mp4 (real photos) through the shared-memory
ring, ImageClassifier answers with the default model, `ggvision core run --watch` prints them.
`make unit` builds everything first; run alone, the test skips unless the build exists.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RESULT = re.compile(r"^\s*(\d+)\s+([\d.]+) fps\s+([\d.]+|-) ms\s+(.*)$")


def _built() -> bool:
    return (REPO / "greengrass-build" / ".built").exists() and (REPO / ".venv").is_dir()


@pytest.fixture()
def root() -> object:
    path = Path(tempfile.mkdtemp(prefix="ggvrun", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_make_run_classifies_the_sample_video(root: Path) -> None:
    if not _built():
        if os.environ.get("GGV_REQUIRE_BUILD"):
            pytest.fail("make build has not run (GGV_REQUIRE_BUILD is set)")
        pytest.skip("run `make build` first")
    proc = subprocess.run(
        ["make", "-s", "run", "MAX_RESULTS=40", f"ROOT={root}", "RUN_ARGS=--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    results = [m for m in map(RESULT.match, lines) if m]
    assert [int(m.group(1)) for m in results] == list(range(1, 41))
    labels = [m.group(4) for m in results]
    assert not [x for x in labels if x.startswith("ERROR")], labels
    # The video opens on chelsea (a tabby) for 15 frames, then coffee (an espresso).
    assert any("cat" in x for x in labels[:10]), labels[:10]
    assert any("espresso" in x for x in labels), labels
    assert all(m.group(3) != "-" for m in results)  # every request was timed
    summary = json.loads(lines[-1])
    assert summary["reason"] == "max-results"
    states = {c["name"]: c["state"] for c in summary["components"]}
    assert states["com.custom.ImageClassifier"] == "FINISHED"
    assert states["com.custom.CameraSource"] == "FINISHED"
    assert "40 results (0 errors" in proc.stderr


def test_make_run_task_detect_prints_the_boxes_of_each_frame(root: Path) -> None:
    detector = list((REPO / "recipes").glob("com.custom.ObjectDetector-*.yaml"))
    store = list((REPO / "recipes").glob("com.custom.ObjectDetection.ModelStore-*.yaml"))
    if not _built() or not detector or not store:
        if os.environ.get("GGV_REQUIRE_BUILD"):
            pytest.fail("make build has not built the detector (GGV_REQUIRE_BUILD is set)")
        pytest.skip("run `make models-detect build` first")
    proc = subprocess.run(
        ["make", "-s", "run", "TASK=detect", "MAX_RESULTS=80", f"ROOT={root}", "RUN_ARGS=--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    results = [m for m in map(RESULT.match, lines) if m]
    assert [int(m.group(1)) for m in results] == list(range(1, 81))
    shown = [m.group(4) for m in results]
    assert not [x for x in shown if x.startswith("ERROR")], shown
    # The video holds the astronaut (a person) and photos with nobody in them.
    assert any(re.match(r"person \d\.\d\d \[[\d. ]+\]", x) for x in shown), shown
    assert any("nothing detected" in x for x in shown), shown
    assert all(m.group(3) != "-" for m in results)  # requests on local/detect were timed
    states = {c["name"]: c["state"] for c in json.loads(lines[-1])["components"]}
    assert states["com.custom.ObjectDetector"] == "FINISHED"
