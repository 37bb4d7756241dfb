"""Fixtures for the live view: the component as a real process on the IPC core (its recipe's
accessControl), beside the real camera and classifier, and HTTP helpers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image

from ggvision.testing.harness import CoreThread
from tests.camera.conftest import CameraProcess, photo
from tests.classifier.conftest import store  # noqa: F401 - the model store, for the suite
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
NAME = "com.custom.LiveView"
RECIPE = REPO / "components" / NAME / "recipe.yaml"
SHOTS = REPO / "build" / "liveview"
CATS = {"tabby", "tiger cat", "Egyptian cat"}
CLASSIFIER = "com.custom.ImageClassifier"
CAMERA = "com.custom.CameraSource"
STATUS_TOPICS = [f"local/status/{CAMERA}", f"local/status/{CLASSIFIER}"]


def recipe_defaults() -> dict[str, Any]:
    cfg: dict[str, Any] = yaml.safe_load(RECIPE.read_text())["ComponentConfiguration"][
        "DefaultConfiguration"
    ]
    return cfg


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http_get(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> Reply:
    req = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return Reply(r.status, dict(r.headers), r.read())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, dict(exc.headers), exc.read())


def first_event(url: str, timeout: float = 15.0, want: str = "jpeg") -> dict[str, Any]:
    """The first ``state`` event on ``/events`` whose text holds ``want``."""
    with urllib.request.urlopen(url, timeout=timeout) as r:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = r.readline()
            if line.startswith(b"data: ") and want.encode() in line:
                doc: dict[str, Any] = json.loads(line[len(b"data: ") :])
                return doc
    raise AssertionError(f"no event with {want!r} in {timeout} s")


class LiveViewProcess:
    """``python -m ggvision_liveview`` on the core, with its JSON log lines collected."""

    def __init__(self, core: CoreThread, overrides: dict[str, Any]) -> None:
        self.port = overrides.setdefault("port", free_port())
        cfg = {**recipe_defaults(), **overrides}
        env = core.component_env(NAME, configuration=cfg)
        env["GGV_PYTHON"] = sys.executable
        self.core = core
        self.log_file = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in close()
            prefix="ggv-liveview-", suffix=".log", dir="/tmp"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ggvision_liveview"], env=env, stdout=self.log_file
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_running(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.core.state_of(NAME) == "RUNNING":
                return
            assert self.proc.poll() is None, f"live view exited: {self.logs()}"
            time.sleep(0.05)
        raise AssertionError("the live view did not report RUNNING")

    def logs(self) -> list[dict[str, Any]]:
        text = Path(self.log_file.name).read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    def close(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.log_file.close()
        return code


@pytest.fixture
def chelsea_folder(tmp_path: Path) -> Path:
    """A folder holding one photo (scikit-image's chelsea, a tabby): every frame is a cat."""
    pytest.importorskip("skimage", reason="scikit-image provides the sample photos")
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(photo("chelsea")).save(folder / "chelsea.jpg", quality=95)
    return folder


@dataclass
class Suite:
    core: CoreThread
    camera: CameraProcess
    classifier: subprocess.Popen[bytes]
    liveview: LiveViewProcess
    paths: list[str]  # paths that exist on this machine and must never be shown


@pytest.fixture
def suite(
    core: CoreThread,
    frames: Path,
    chelsea_folder: Path,
    store: Path,  # noqa: F811
) -> Iterator[Suite]:
    """Camera (the chelsea folder at the default rate, 5 fps) -> classifier (tflite-int8) ->
    live view, each a real process with its recipe's accessControl; statuses every second and
    a component without one for 3 s is down."""
    from tests.classifier.test_service import start_classifier

    classifier = start_classifier(
        core,
        store,
        {"modelKey": "tflite-int8", "frameDirectory": str(frames), "statusIntervalSeconds": 1.0},
    )
    camera = CameraProcess(
        core,
        {
            "source": {"type": "folder", "path": str(chelsea_folder)},
            "ringDirectory": str(frames),
            "statusIntervalSeconds": 1.0,
        },
    )
    liveview = LiveViewProcess(core, {"frameDirectory": str(frames), "staleAfterSeconds": 3.0})
    try:
        camera.wait_running()
        liveview.wait_running()
        yield Suite(
            core,
            camera,
            classifier,
            liveview,
            [str(frames), str(chelsea_folder), str(store), str(REPO), os.path.expanduser("~")],
        )
    finally:
        liveview.close()
        camera.stop()
        camera.__exit__()
        if classifier.poll() is None:
            classifier.terminate()
        classifier.wait(15)
