"""The capture loop with real sources: pacing, and a lost camera that comes back (a video file
deleted and recreated, a V4L2 device that does not exist) without ever stopping the loop."""

from __future__ import annotations

import importlib.util
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from ggvision_camera import sources
from ggvision_camera.capture import Backoff, Capture
from ggvision_camera.config import PiCameraSource, SyntheticSource, V4L2Source, VideoFileSource
from ggvision_camera.sources.base import FrameSource
from ggvision_camera.sources.synthetic import read_number

from tests.camera.conftest import photo_video_frames, write_video


class Collector:
    """The capture loop's downstream: keeps what it is offered (always has room)."""

    def __init__(self) -> None:
        self.frames: list[tuple[int, np.ndarray]] = []
        self.lock = threading.Lock()

    def offer(self, frame: np.ndarray, index: int, captured_at: float) -> bool:
        with self.lock:
            self.frames.append((index, frame))
        return True

    def wait_for_room(self, timeout: float) -> bool:
        return True

    def count(self) -> int:
        with self.lock:
            return len(self.frames)


def make(config: object) -> FrameSource:
    return sources.create(config, max_width=1280, max_height=720)


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def delays(caplog: pytest.LogCaptureFixture) -> list[float]:
    return [
        vars(r)["delay_s"]
        for r in caplog.records
        if getattr(r, "event", "") == "camera.reconnect_wait"
    ]


def events(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", "") == event]


def test_backoff_doubles_up_to_its_cap_and_resets() -> None:
    b = Backoff(0.5, 3.0)
    assert [b.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    b.reset()
    assert b.next() == 0.5


def test_a_non_live_source_is_paced_at_the_target_fps() -> None:
    sink = Collector()
    capture = Capture(make(SyntheticSource()), sink, fps=20, backoff=Backoff(0.1, 1))
    capture.start()
    time.sleep(1.0)
    capture.stop()
    assert 16 <= sink.count() <= 23
    assert capture.skipped == 0
    assert [read_number(f) for _, f in sink.frames[:3]] == [0, 1, 2]
    assert [i for i, _ in sink.frames[:3]] == [1, 2, 3]


def test_a_live_source_is_drained_and_only_due_frames_are_handed_on(media: Path) -> None:
    # Through the V4L2 class (live), a video file is read as fast as it decodes; at 10 fps
    # most frames are skipped, so each one handed on is the newest.
    sink = Collector()
    camera = make(V4L2Source(device=str(media / "photos.avi"), api="any"))
    capture = Capture(camera, sink, fps=10, backoff=Backoff(0.01, 0.05))
    capture.start()
    time.sleep(1.0)
    capture.stop()
    assert 8 <= sink.count() <= 13
    assert capture.skipped > sink.count()
    assert capture.captured == capture.skipped + sink.count()


def test_a_deleted_video_file_is_reconnected_with_backoff_once_it_is_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ggvision_camera")
    path = write_video(tmp_path / "clip.avi", photo_video_frames())
    sink = Collector()
    capture = Capture(
        make(VideoFileSource(path=str(path))), sink, fps=100, backoff=Backoff(0.05, 0.4)
    )
    capture.start()
    try:
        wait_for(lambda: sink.count() >= 5)
        assert capture.state == "streaming"
        path.unlink()
        # The open file plays to its end; reopening it then fails and back-off begins.
        wait_for(lambda: capture.state == "reconnecting")
        time.sleep(1.6)
        before = sink.count()
        time.sleep(0.3)
        assert sink.count() == before, "no frames while the file is gone"
        assert capture.alive
        waits = delays(caplog)
        assert waits[:5] == [0.05, 0.1, 0.2, 0.4, 0.4]
        assert all(
            "no such video file" in vars(r)["reason"]
            for r in events(caplog, "camera.reconnect_wait")
        )

        write_video(path, photo_video_frames())
        wait_for(lambda: sink.count() > before + 5)
        assert capture.state == "streaming"
        assert capture.reconnects == 1
    finally:
        capture.stop()
    assert not capture.alive
    assert capture.state == "stopped"
    # Each state change is logged once, not once per attempt or per frame.
    assert len(events(caplog, "camera.reconnecting")) == 1
    assert len(events(caplog, "camera.streaming")) == 2


def test_a_missing_v4l2_device_is_retried_at_a_capped_pace_and_stops_promptly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="ggvision_camera")
    sink = Collector()
    capture = Capture(
        make(V4L2Source(device="/dev/video77")), sink, fps=0, backoff=Backoff(0.02, 0.1)
    )
    capture.start()
    time.sleep(0.8)
    t0 = time.monotonic()
    capture.stop()
    assert time.monotonic() - t0 < 0.5
    assert not capture.alive
    waits = delays(caplog)
    assert len(waits) >= 6
    assert waits[:4] == [0.02, 0.04, 0.08, 0.1] and set(waits[4:]) == {0.1}
    assert sink.count() == 0
    warnings = events(caplog, "camera.reconnecting")
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert "no such device: /dev/video77" in warnings[0].getMessage()


def test_a_source_that_cannot_work_here_is_an_error_retried_at_the_slowest_pace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    if importlib.util.find_spec("picamera2") is not None:
        pytest.skip("picamera2 is installed here")
    caplog.set_level(logging.DEBUG, logger="ggvision_camera")
    capture = Capture(make(PiCameraSource()), Collector(), fps=0, backoff=Backoff(0.01, 0.2))
    capture.start()
    time.sleep(0.5)
    capture.stop()
    assert capture.state == "stopped"
    failed = events(caplog, "camera.failed")
    assert len(failed) == 1 and failed[0].levelno == logging.ERROR
    assert "apt install python3-picamera2" in failed[0].getMessage()
    assert set(delays(caplog)) == {0.2}


def test_a_video_that_opens_but_has_no_frames_keeps_backing_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ggvision_camera")
    path = write_video(tmp_path / "clip.avi", photo_video_frames())
    data = path.read_bytes()
    path.write_bytes(data[: data.find(b"movi") + 4])  # the header survives, the frames do not
    capture = Capture(
        make(VideoFileSource(path=str(path))), Collector(), fps=0, backoff=Backoff(0.02, 0.08)
    )
    capture.start()
    time.sleep(0.6)
    capture.stop()
    waits = delays(caplog)
    assert waits[:3] == [0.02, 0.04, 0.08] and set(waits[3:]) == {0.08}
    assert events(caplog, "camera.streaming") == []
    (lost,) = events(caplog, "camera.reconnecting")
    assert "has no readable frames" in lost.getMessage()  # it opened, then had nothing
