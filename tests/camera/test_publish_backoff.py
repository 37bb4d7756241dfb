"""The camera's publisher while the IPC core is gone: a real IpcBus on a core that restarts.

Frames offered during the outage are dropped and counted after the first failed publish, with
a doubling pause between attempts (not one failed publish, error line and JPEG encode per
frame), and publishing resumes by itself once the bus has reconnected."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from ggvision_camera.flow import PUBLISH_FAILED, FramePublisher
from ggvision_camera.transport import InlineJpegTransport

from ggvision.bus import IpcBus
from ggvision.testing.harness import CoreThread, pubsub_policy

NAME = "com.custom.CameraSource"
TOPIC = "local/inference"


def test_publishing_backs_off_while_the_core_is_down_and_resumes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with CoreThread() as core:
        for key, value in core.component_env(NAME, pubsub_policy(publish=[TOPIC])).items():
            monkeypatch.setenv(key, value)
        bus = IpcBus(reconnect_initial_s=0.1, reconnect_max_s=0.2)
        publisher = FramePublisher(
            bus,
            InlineJpegTransport(quality=80),
            camera="cam",
            topic=TOPIC,
            max_in_flight=1_000_000,  # nobody answers here: only the back-off may hold frames
            timeout_s=600.0,
        )
        frame = np.zeros((48, 64, 3), np.uint8)
        stop = threading.Event()
        offered = [0]

        def capture() -> None:  # a 200 fps camera
            while not stop.is_set():
                publisher.offer(frame, offered[0], time.monotonic())
                offered[0] += 1
                time.sleep(0.005)

        thread = threading.Thread(target=capture, daemon=True)
        thread.start()
        try:
            time.sleep(0.3)
            sent_before = publisher.stats.sent
            assert sent_before > 20 and not publisher.stats.errors
            offered_at_outage = offered[0]
            core.restart(down_s=1.5)
            offered_during = offered[0] - offered_at_outage
            failures = publisher.stats.errors[PUBLISH_FAILED]
            dropped = publisher.stats.dropped
            # the bus reconnects within ~0.2 s and the back-off pause (at most 2 s) ends
            deadline = time.monotonic() + 10
            sent_at_restart = publisher.stats.sent
            while publisher.stats.sent < sent_at_restart + 50 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stop.set()
            thread.join(5)
            bus.close()
    assert offered_during > 150
    # pauses of 0.05, 0.1, 0.2, 0.4, 0.8 s: a handful of attempts in 1.5 s, not one per frame
    assert 1 <= failures <= 8, (failures, offered_during)
    assert dropped >= offered_during - failures - 10
    assert publisher.stats.sent >= sent_at_restart + 50, "publishing never resumed"
    assert publisher.stats.errors[PUBLISH_FAILED] <= failures + 3
