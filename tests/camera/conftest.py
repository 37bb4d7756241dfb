"""Fixtures for CameraSource: real media made from scikit-image's sample photos (videos written
by OpenCV's VideoWriter, a folder of JPEG/PNG files), the recipe's defaults, and a helper that
runs the component as a real process on the IPC core."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from ggvision.testing.agent import AgentProcess
from ggvision.testing.harness import CoreThread, pubsub_policy
from tests.classifier.conftest import store  # noqa: F401 - the model store, for end to end

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "components" / "com.custom.CameraSource" / "recipe.yaml"
NAME = "com.custom.CameraSource"
VIDEO_SIZE = (320, 240)
# The video's photos, in order, each held for FRAMES_PER_PHOTO frames.
VIDEO_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")
FRAMES_PER_PHOTO = 3


def recipe() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(RECIPE.read_text())
    return loaded


def recipe_defaults() -> dict[str, Any]:
    cfg: dict[str, Any] = recipe()["ComponentConfiguration"]["DefaultConfiguration"]
    return cfg


def photo(name: str) -> np.ndarray:
    """A sample photo as RGB uint8 (greyscale ones widened)."""
    import skimage.data

    pixels = np.asarray(getattr(skimage.data, name)())
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    return np.ascontiguousarray(pixels[:, :, :3])


def video_frame(name: str, size: tuple[int, int] = VIDEO_SIZE) -> np.ndarray:
    """The photo centre-cropped to the video's aspect ratio and resized to it (RGB)."""
    pixels = photo(name)
    h, w = pixels.shape[:2]
    want = size[0] / size[1]
    if w / h > want:
        cw = round(h * want)
        pixels = pixels[:, (w - cw) // 2 : (w - cw) // 2 + cw]
    else:
        ch = round(w / want)
        pixels = pixels[(h - ch) // 2 : (h - ch) // 2 + ch]
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BICUBIC))


def write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    """An MP4 (mp4v) or AVI (MJPG) file written by OpenCV from RGB frames."""
    import cv2

    fourcc = "mp4v" if path.suffix == ".mp4" else "MJPG"
    h, w = frames[0].shape[:2]
    tmp = path.with_name(f".{path.name}.part{path.suffix}")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened(), f"OpenCV cannot write {fourcc}"
    for frame in frames:
        writer.write(np.ascontiguousarray(frame[:, :, ::-1]))  # OpenCV writes BGR
    writer.release()
    tmp.replace(path)
    return path


def photo_video_frames() -> list[np.ndarray]:
    return [video_frame(n) for n in VIDEO_PHOTOS for _ in range(FRAMES_PER_PHOTO)]


@pytest.fixture
def listener(core: CoreThread) -> Iterator[AgentProcess]:
    """A real-client agent that may subscribe to every local topic and the telemetry topic."""
    agent = AgentProcess(
        core.component_env(
            "com.test.Listener",
            pubsub_policy(subscribe=["local/*", "$local/greengrass/telemetry"]),
        )
    )
    yield agent
    agent.close()


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("skimage", reason="scikit-image provides the sample photos")
    pytest.importorskip("cv2", reason="install extra [opencv]: opencv-python-headless")
    folder = tmp_path_factory.mktemp("media")
    frames = photo_video_frames()
    write_video(folder / "photos.mp4", frames)
    write_video(folder / "photos.avi", frames)
    return folder


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """b_coffee.png, c_broken.jpg (undecodable), d_astronaut.jpg, a_chelsea.jpg, notes.txt."""
    pytest.importorskip("skimage", reason="scikit-image provides the sample photos")
    folder = tmp_path_factory.mktemp("folder")
    Image.fromarray(photo("chelsea")).save(folder / "a_chelsea.jpg", quality=95)
    Image.fromarray(photo("coffee")).save(folder / "b_coffee.png")
    (folder / "c_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    Image.fromarray(photo("astronaut")).save(folder / "d_astronaut.jpg", quality=95)
    (folder / "notes.txt").write_text("not an image\n")
    return folder


# --- the component as a process ------------------------------------------------------------------
class CameraProcess:
    """``python -m ggvision_camera`` on the core, with its JSON log lines collected."""

    def __init__(self, core: CoreThread, overrides: dict[str, Any], name: str = NAME) -> None:
        cfg = {**recipe_defaults(), **overrides}
        env = core.component_env(name, configuration=cfg)
        env["GGV_PYTHON"] = sys.executable
        self.core, self.name = core, name
        # A file, not a pipe: a pipe nobody reads would block the component when it fills.
        self.log_file = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in __exit__
            prefix="ggv-camera-", suffix=".log", dir="/tmp"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ggvision_camera"], env=env, stdout=self.log_file
        )

    def wait_running(self, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.core.state_of(self.name) == "RUNNING":
                return
            assert self.proc.poll() is None, f"camera exited: {self.logs()}"
            time.sleep(0.02)
        raise AssertionError("the camera did not report RUNNING")

    def stop(self, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def logs(self) -> list[dict[str, Any]]:
        """Every JSON log line so far."""
        text = Path(self.log_file.name).read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    def __enter__(self) -> CameraProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log_file.close()


def decode_event(event: dict[str, Any]) -> dict[str, Any]:
    if "json" in event:
        obj: dict[str, Any] = event["json"]
        return obj
    decoded: dict[str, Any] = json.loads(base64.b64decode(event["binary"]))
    return decoded


def collect(agent: AgentProcess, sub: int, until: float, n: int = 1000) -> list[dict[str, Any]]:
    """Events of ``sub`` until the monotonic time ``until``."""
    out: list[dict[str, Any]] = []
    while (left := until - time.monotonic()) > 0:
        got = agent("events", sub=sub, n=n, timeout=min(left, 1.0))["events"]
        out += [decode_event(e) for e in got]
    return out
