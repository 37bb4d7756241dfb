"""Reliability with a real RTSP camera: GStreamer's GstRtspServer (run by Debian's system Python,
``tests/camera/rtsp_server.py``) streams a video of real photos on loopback to a CameraSource
process that also drives a second camera. The server is stopped mid-stream: that camera is
reported down with its reason and retried with back-off while the other one goes on; the server
starts again on the same port and the camera recovers by itself.

Needs /usr/bin/python3 with gi, GstRtspServer 1.0 and GStreamer's base/good/bad plugins
(Debian: gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-{base,good,bad}
python3-gi); skipped without them unless ``GGV_REQUIRE_RTSP`` is set (CI sets it).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ggvision.testing.agent import AgentProcess
from ggvision.testing.harness import CoreThread, pubsub_policy
from tests.camera.conftest import REPO, CameraProcess, collect, photo_video_frames, write_video
from tests.camera.test_component import SlowConsumer

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER = REPO / "tests" / "camera" / "rtsp_server.py"
STATUS = "local/status/com.custom.CameraSource"
ELEMENTS = ("filesrc", "avidemux", "jpegdec", "videoconvert", "jpegenc", "rtpjpegpay")
_PROBE = (
    "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0');"
    "from gi.repository import Gst, GstRtspServer; Gst.init(None);"
    f"missing = [e for e in {ELEMENTS!r} if Gst.ElementFactory.find(e) is None];"
    "print(' '.join(missing)); raise SystemExit(1 if missing else 0)"
)


def _rtsp_missing() -> str:
    """Why the RTSP server cannot run here ('' when it can)."""
    if not os.path.exists(SYSTEM_PYTHON):
        return f"no {SYSTEM_PYTHON}"
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", _PROBE], capture_output=True, text=True, timeout=60, check=False
    )
    if probe.returncode:
        return f"GstRtspServer or GStreamer elements missing: {probe.stdout or probe.stderr}"
    return ""


@pytest.fixture(scope="module")
def rtsp_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = _rtsp_missing()
    if missing:
        if os.environ.get("GGV_REQUIRE_RTSP"):
            pytest.fail(f"{missing} (GGV_REQUIRE_RTSP is set)")
        pytest.skip(f"{missing}: apt-get install gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0")
    pytest.importorskip("cv2", reason="install extra [opencv]: opencv-python-headless")
    pytest.importorskip("skimage", reason="scikit-image provides the sample photos")
    # A minute of the photos at 10 fps: longer than the test, so the stream never ends.
    path = tmp_path_factory.mktemp("rtsp") / "photos.avi"
    return write_video(path, photo_video_frames() * 50, fps=10.0)


class RtspServer:
    """The server as a process on a fixed port: stopped and started again at will."""

    def __init__(self, video: Path) -> None:
        self.video = video
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam"

    def start(self) -> None:
        proc = subprocess.Popen(
            [SYSTEM_PYTHON, str(SERVER), str(self.port), str(self.video)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", "the RTSP server did not start"
        self.proc = proc

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def server(rtsp_video: Path) -> Iterator[RtspServer]:
    srv = RtspServer(rtsp_video)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def listener(core: CoreThread) -> Iterator[AgentProcess]:
    agent = AgentProcess(core.component_env("com.test.Listener", pubsub_policy(subscribe=[STATUS])))
    yield agent
    agent.close()


def _wait_for(
    agent: AgentProcess, sub: int, ok: Callable[[dict[str, Any]], bool], timeout: float
) -> list[dict[str, Any]]:
    """Status reports until one satisfies ``ok`` (returned last) or ``timeout``."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen += collect(agent, sub, time.monotonic() + 0.3)
        if seen and ok(seen[-1]):
            return seen
    raise AssertionError(f"no status satisfied the condition in {timeout} s: {seen[-1:]}")


def test_a_lost_rtsp_camera_is_retried_with_back_off_while_the_other_goes_on(
    core: CoreThread, listener: AgentProcess, server: RtspServer, tmp_path: Path
) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    statuses = listener("subscribe", topic=STATUS)["sub"]
    consumer = SlowConsumer(core, delay_ms=5, frames=frames)
    stream = {
        "type": "stream",
        "url": server.url,
        "openTimeoutSeconds": 3,
        "readTimeoutSeconds": 1,
    }
    overrides = {
        "cameras": [
            {"name": "door", "source": stream},
            {"name": "yard", "source": {"type": "synthetic", "width": 320, "height": 240}},
        ],
        "fps": 10,
        "ringDirectory": str(frames),
        "statusIntervalSeconds": 0.25,
        "reconnectInitialSeconds": 0.2,
        "reconnectMaxSeconds": 0.8,
    }

    def door(s: dict[str, Any]) -> dict[str, Any]:
        cam: dict[str, Any] = s["cameras"]["door"]
        return cam

    try:
        with CameraProcess(core, overrides) as camera:
            camera.wait_running()
            up = _wait_for(
                listener,
                statuses,
                lambda s: door(s)["state"] == "streaming" and door(s)["answered"] > 5,
                30,
            )[-1]
            assert up["cameras"]["yard"]["state"] == "streaming"

            server.stop()  # mid-stream
            down = _wait_for(listener, statuses, lambda s: door(s)["state"] == "reconnecting", 20)
            first_down = down[-1]
            yard_sent = first_down["cameras"]["yard"]["sent"]
            # Down for a while, retried with back-off: the other camera goes on meanwhile.
            outage = _wait_for(
                listener,
                statuses,
                lambda s: s["cameras"]["yard"]["sent"] >= yard_sent + 10,
                20,
            )
            during = [first_down, *outage]
            server.start()  # the same port again
            back = _wait_for(
                listener,
                statuses,
                lambda s: (
                    door(s)["state"] == "streaming"
                    and door(s)["captured"] > door(first_down)["captured"] + 5
                ),
                30,
            )[-1]
            assert camera.stop() == 0
            logs = camera.logs()
        consumer.summary()
    finally:
        consumer.kill()

    assert all(door(s)["state"] == "reconnecting" for s in during)
    # Nothing captured from the lost stream while it was down (the state says why).
    assert door(during[-1])["captured"] == door(first_down)["captured"]
    assert "stream rtsp://127.0.0.1" in door(first_down)["reason"]
    retries = [door(s)["retry_in_s"] for s in during if door(s)["retry_in_s"] is not None]
    assert retries and all(0 <= r <= 0.8 for r in retries)
    assert during[-1]["state"] == "degraded" and during[-1]["reason"].startswith("door: ")
    # The other camera streamed throughout.
    assert all(s["cameras"]["yard"]["state"] == "streaming" for s in during)
    # Back by itself: one reconnect, the reason cleared, frames flowing and answered again.
    assert (door(back)["reconnects"], door(back)["reason"]) == (1, "")
    assert door(back)["answered"] > door(first_down)["answered"]
    assert back["state"] == "streaming"
    lost = [r for r in logs if r["event"] == "camera.reconnecting"]
    assert [r["camera"] for r in lost] == ["door"], "one line per outage, not per attempt"
