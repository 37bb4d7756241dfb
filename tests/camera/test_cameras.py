"""Several cameras in one CameraSource: the ``cameras`` list (validated, the single-camera
configuration as a list of one), regions of interest, ``loop`` off, and the component as a real
process with two or three cameras, each with its own ring, flow limit and status section."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from ggvision_camera import sources
from ggvision_camera.app import _SUMMED, combine
from ggvision_camera.config import CameraConfig, Roi, SyntheticSource, VideoFileSource
from ggvision_camera.errors import SourceEnded
from ggvision_camera.flow import InFlightBudget
from ggvision_camera.sources.synthetic import pattern

from ggvision.errors import ConfigError
from ggvision.testing.agent import AgentProcess
from ggvision.testing.harness import CoreThread
from tests.camera.conftest import (
    FRAMES_PER_PHOTO,
    NAME,
    VIDEO_PHOTOS,
    CameraProcess,
    collect,
    recipe_defaults,
)
from tests.camera.test_component import SlowConsumer

STATUS = "local/status/com.custom.CameraSource"


# --- configuration -------------------------------------------------------------------------------
def test_the_single_camera_configuration_is_a_list_of_one() -> None:
    cfg = CameraConfig.from_raw({**recipe_defaults(), "cameraName": "door", "fps": 3})
    (only,) = cfg.camera_configs()
    assert only is cfg
    assert cfg.camera_names == ["door"]
    assert (only.camera_name, only.fps, only.roi.whole) == ("door", 3.0, True)


def test_each_camera_overrides_the_per_camera_keys_and_shares_the_rest() -> None:
    cfg = CameraConfig.from_raw(
        {
            **recipe_defaults(),
            "fps": 4,
            "maxInFlight": 3,
            "ringName": "site",
            "cameras": [
                {"name": "door", "source": {"type": "video", "path": "/v.mp4", "loop": False}},
                {
                    "name": "yard",
                    "fps": 0,
                    "maxInFlight": 1,
                    "tasks": ["classify", "detect"],
                    "roi": {"x": 0.5, "width": 0.5},
                    "maxWidth": 320,
                },
            ],
        }
    )
    door, yard = cfg.camera_configs()
    assert cfg.camera_names == ["door", "yard"]
    assert door.source == VideoFileSource(path="/v.mp4", loop=False)
    assert (door.fps, door.max_in_flight, door.tasks, door.roi.whole) == (
        4.0,
        3,
        ["classify"],
        True,
    )
    assert isinstance(yard.source, SyntheticSource)
    assert (yard.fps, yard.max_in_flight, yard.max_width, yard.max_height) == (0.0, 1, 320, 720)
    assert yard.roi == Roi(x=0.5, width=0.5)
    assert yard.request_topics() == ["local/inference", "local/detect"]
    # A root ringName is a prefix: every camera has its own ring.
    assert (door.ring_name, yard.ring_name) == ("site-door", "site-yard")
    # Shared keys are the root's.
    assert door.result_topic == yard.result_topic == cfg.result_topic
    assert all(c.cameras == [] for c in (door, yard))


@pytest.mark.parametrize(
    ("cameras", "extra", "message"),
    [
        ([{"name": "a"}, {"name": "b"}, {"name": "a"}], {}, "camera names must be unique: a"),
        ([{"name": "a", "ringName": "r"}, {"name": "b", "ringName": "r"}], {}, "ring names"),
        ([{"name": "a"}, {"name": "b", "maxInFlight": 8}], {}, "camera b: ringSlots"),
        ([{"name": "a b"}], {}, "cameras.0.name"),
        ([{"name": "a", "roi": {"x": 0.6, "width": 0.5}}], {}, "roi must lie inside"),
        ([{"name": "a", "tasks": ["classify", "classify"]}], {}, "camera a: tasks names"),
        ([{"name": "a", "source": {"type": "video"}}], {}, "cameras.0.source.video.path"),
    ],
)
def test_a_bad_camera_list_is_rejected_with_a_clear_reason(
    cameras: list[dict[str, Any]], extra: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        CameraConfig.from_raw({**recipe_defaults(), "cameras": cameras, **extra})
    assert message in str(err.value)


def test_unknown_keys_inside_the_camera_list_are_logged_not_fatal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    raw = {
        "cameras": [
            {"name": "a", "colour": "red", "source": {"type": "synthetic", "lens": 4}},
            {"name": "b"},
        ]
    }
    with caplog.at_level(logging.WARNING):
        cfg = CameraConfig.from_raw(raw)
    assert cfg.camera_names == ["a", "b"]
    (record,) = [r for r in caplog.records if getattr(r, "event", "") == "config.unknown_keys"]
    assert record.__dict__["keys"] == ["cameras[0].colour", "cameras[0].source.lens"]


# --- regions of interest and loop off --------------------------------------------------------
def test_a_region_of_interest_is_cropped_before_the_frame_is_scaled() -> None:
    roi = Roi(x=0.25, y=0.5, width=0.5, height=0.5)
    source = sources.create(
        SyntheticSource(width=640, height=480), max_width=160, max_height=160, roi=roi
    )
    with source:
        frame = source.read()
    whole = pattern(0, 640, 480)
    crop = whole[240:480, 160:480]  # rows y 0.5..1, columns x 0.25..0.75
    assert frame.shape == (120, 160, 3)  # 320x240 scaled down into 160x160, aspect kept
    # Red follows x and green follows y: the crop's corners, not the whole frame's.
    assert abs(int(frame[-1, -1, 0]) - int(crop[-1, -1, 0])) <= 3
    assert abs(int(frame[60, 0, 1]) - int(crop[120, 0, 1])) <= 3
    assert int(frame[60, 0, 0]) > int(whole[0, 0, 0]) + 50  # not the left edge of the frame


def test_a_video_played_once_ends_and_is_played_again_only_when_it_changes(media: Path) -> None:
    import shutil

    path = media.parent / "once.avi"
    shutil.copy(media / "photos.avi", path)
    cfg = VideoFileSource(path=str(path), loop=False)
    source = sources.create(cfg, max_width=1280, max_height=720)
    source.open()
    frames = 0
    with pytest.raises(SourceEnded) as ended:
        while True:
            source.read()
            frames += 1
    assert frames == len(VIDEO_PHOTOS) * FRAMES_PER_PHOTO
    assert "ended (loop off)" in str(ended.value)
    source.close()
    with pytest.raises(SourceEnded):
        source.open()  # the same file: not played again
    shutil.copy(media / "photos.mp4", path)  # a new recording at the same path
    source.open()
    assert source.read().shape[2] == 3
    source.close()


def test_the_combined_status_adds_up_the_cameras() -> None:
    def one(name: str, state: str, sent: int, reason: str = "") -> dict[str, Any]:
        counts = dict.fromkeys(_SUMMED, 1)
        return {
            **counts,
            "camera": name,
            "state": state,
            "reason": reason,
            "retry_in_s": 2.0 if reason else None,
            "transport": "frame",
            "sent": sent,
            "fps": {"captured": 1.0, "sent": float(sent), "dropped": 0.5},
            "errors": {"IMAGE_NOT_FOUND": 1},
            "requests": {"sent": sent, "ok": sent},
            "running_s": 3.0,
        }

    both = combine(
        [one("a", "streaming", 5), one("b", "reconnecting", 2, "stream gone")], [1.0, 2.0, 30.0]
    )
    assert (both["camera"], both["state"], both["reason"]) == (
        "a, b",
        "degraded",
        "b: stream gone",
    )
    assert (both["sent"], both["captured"], both["fps"]["sent"]) == (7, 2, 7.0)
    assert {"in_flight", "captured", "dropped", "answered", "lost", "reconnects"} <= set(_SUMMED)
    assert all(both[k] == 2 for k in _SUMMED if k != "sent")
    assert both["errors"] == {"IMAGE_NOT_FOUND": 2}
    assert both["requests"] == {"sent": 7, "ok": 7}
    assert both["retry_in_s"] == 2.0
    assert both["latency_ms"]["p95"] > 2.0
    assert combine([one("a", "streaming", 1), one("b", "starting", 1)], [])["state"] == "starting"


# --- the component as a process -------------------------------------------------------------
def test_several_cameras_each_send_their_own_frames_through_their_own_ring(
    core: CoreThread, listener: AgentProcess, frames: Path, media: Path
) -> None:
    statuses = listener("subscribe", topic=STATUS)["sub"]
    requests = listener("subscribe", topic="local/inference")["sub"]
    results = listener("subscribe", topic="local/result")["sub"]
    telemetry = listener("subscribe", topic="$local/greengrass/telemetry")["sub"]
    consumer = SlowConsumer(core, delay_ms=5, frames=frames)
    overrides = {
        "cameras": [
            {"name": "door", "source": {"type": "synthetic", "width": 320, "height": 240}},
            {"name": "yard", "source": {"type": "video", "path": str(media / "photos.mp4")}},
            {
                "name": "once",
                "source": {"type": "video", "path": str(media / "photos.avi"), "loop": False},
                "fps": 0,
            },
        ],
        "fps": 20,
        "ringDirectory": str(frames),
        "statusIntervalSeconds": 0.3,
        "reconnectInitialSeconds": 0.2,
        "reconnectMaxSeconds": 0.4,
    }
    try:
        with CameraProcess(core, overrides) as camera:
            camera.wait_running()
            reports = collect(listener, statuses, time.monotonic() + 2.5)
            rings = sorted(p.name for p in frames.iterdir())
            assert camera.stop() == 0
            reports += collect(listener, statuses, time.monotonic() + 0.5)
            logs = camera.logs()
        sent = collect(listener, requests, time.monotonic() + 0.3)
        answers = collect(listener, results, time.monotonic() + 0.3)
        metrics = collect(listener, telemetry, time.monotonic() + 0.3)
        consumer.summary()
    finally:
        consumer.kill()

    # One ring each, named after the camera, all unlinked at the stop.
    assert [r.split("-")[1] for r in rings] == ["door", "once", "yard"]
    assert list(frames.iterdir()) == []
    # Every request names its camera as source, from its own ring; every answer echoes it.
    by_source: dict[str, set[str]] = {}
    for r in sent:
        by_source.setdefault(r["source"], set()).add(r["image"]["frame"]["ring"])
    assert {k: len(v) for k, v in by_source.items()} == {"door": 1, "yard": 1, "once": 1}
    assert {r["source"] for r in answers} == {"door", "yard", "once"}
    assert all(r["id"].startswith(f"{r['source']}-") for r in answers)

    running = [s for s in reports if s["state"] != "stopped"]
    last_running, last = running[-1], reports[-1]
    cams = last_running["cameras"]
    assert list(cams) == ["door", "yard", "once"]
    assert cams["door"]["state"] == cams["yard"]["state"] == "streaming"
    # The video played once ended (a reportable death, with its reason); the others go on.
    assert cams["once"]["state"] == "ended"
    assert "ended (loop off)" in cams["once"]["reason"]
    assert cams["once"]["captured"] == len(VIDEO_PHOTOS) * FRAMES_PER_PHOTO
    assert last_running["state"] == "degraded" and last_running["reason"].startswith("once: ")
    assert cams["door"]["sent"] > 10 and cams["yard"]["sent"] > 10
    # The top-level figures are the sums of the cameras'.
    assert last["state"] == "stopped"
    assert last["sent"] == sum(c["sent"] for c in last["cameras"].values())
    assert last["answered"] == sum(c["answered"] for c in last["cameras"].values())
    assert last["answered"] == last["sent"] and last["in_flight"] == 0
    # Telemetry: the component's figures and each camera's.
    names = {m["N"] for batch in metrics for m in (batch if isinstance(batch, list) else [])}
    assert {f"{NAME}.Fps", f"{NAME}.door.Fps", f"{NAME}.yard.Healthy"} <= names
    assert sum(r["event"] == "camera.started" for r in logs) == 3
    assert [r["camera"] for r in logs if r["event"] == "camera.ended"] == ["once"]


def test_a_deployment_rebuilds_only_the_cameras_it_changes(
    core: CoreThread, listener: AgentProcess, frames: Path
) -> None:
    statuses = listener("subscribe", topic=STATUS)["sub"]
    two = [{"name": "door"}, {"name": "yard"}]
    overrides = {
        "cameras": two,
        "fps": 20,
        "ringDirectory": str(frames),
        "statusIntervalSeconds": 0.2,
    }
    with CameraProcess(core, overrides) as camera:
        camera.wait_running()
        before = sorted(p.name for p in frames.iterdir())
        twice = [{"name": "door"}, {"name": "door"}]
        rejected = core.deploy({NAME: {"MERGE": {"cameras": twice}}})
        assert rejected.status == "FAILED" and "camera names must be unique" in rejected.message
        changed = [{"name": "door"}, {"name": "yard", "fps": 10}, {"name": "gate"}]
        accepted = core.deploy({NAME: {"MERGE": {"cameras": changed}}})
        assert accepted.status == "SUCCEEDED", accepted.message
        deadline = time.monotonic() + 5
        seen: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not (
            seen and seen[-1]["cameras"].get("gate", {}).get("captured", 0) > 0
        ):
            seen += collect(listener, statuses, time.monotonic() + 0.3)
        after = sorted(p.name for p in frames.iterdir())
        assert camera.stop() == 0
    assert seen, "no status after the deployment"
    cams = seen[-1]["cameras"]
    assert list(cams) == ["door", "yard", "gate"]
    door_ring = [r for r in before if r.startswith("ggv-door-")]
    # door went on untouched (its ring, its counters); yard was rebuilt, gate added.
    assert door_ring and door_ring[0] in after
    assert cams["door"]["running_s"] > cams["yard"]["running_s"] + 0.2
    assert cams["door"]["captured"] > cams["yard"]["captured"]
    assert cams["yard"]["state"] == cams["gate"]["state"] == "streaming"
    assert len(after) == 3 and any(r.startswith("ggv-gate-") for r in after)


# --- the in-flight slots the cameras share -------------------------------------------------------
def test_the_shared_slots_go_to_the_camera_served_least_recently() -> None:
    budget = InFlightBudget(2)
    assert budget.try_take("door") and budget.try_take("door")
    assert not budget.try_take("yard")  # full
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(budget.take("yard", 1, timeout=30)))
    waiter.start()
    deadline = time.monotonic() + 10
    while "yard" not in budget._waiting and time.monotonic() < deadline:
        time.sleep(0.001)
    budget.give(1)
    # door was served last: the free slot is yard's, whoever asks first.
    assert not budget.try_take("door")
    waiter.join(10)
    assert got == [True] and budget.used == 2
    budget.give(2)
    assert budget.try_take("door", 2) and not budget.try_take("yard")
    assert not budget.take("yard", 1, timeout=0.01)  # no slot: False after the time-out


def test_cameras_sharing_max_in_flight_total_never_exceed_it_and_share_fairly(
    core: CoreThread, listener: AgentProcess, frames: Path
) -> None:
    statuses = listener("subscribe", topic=STATUS)["sub"]
    consumer = SlowConsumer(core, delay_ms=10, frames=frames)
    source = {"type": "synthetic", "width": 160, "height": 120}
    overrides = {
        "cameras": [{"name": f"c{i}", "source": source} for i in range(4)],
        "fps": 0,
        "maxInFlight": 2,
        "maxInFlightTotal": 2,
        "ringDirectory": str(frames),
        "statusIntervalSeconds": 0.3,
    }
    try:
        with CameraProcess(core, overrides) as camera:
            camera.wait_running()
            reports = collect(listener, statuses, time.monotonic() + 3.0)
            assert camera.stop() == 0
        summary = consumer.summary()
    finally:
        consumer.kill()
    running = [s for s in reports if s["state"] == "streaming"]
    assert len(running) >= 3
    # Never more than 2 requests out for the 4 cameras together (what the consumer saw too).
    assert summary["peak"] <= 2
    assert all(s["in_flight_total"]["used"] <= 2 == s["in_flight_total"]["limit"] for s in running)
    answered = [c["answered"] for c in running[-1]["cameras"].values()]
    assert min(answered) > 10
    # In turn: no camera more than a few requests ahead of another.
    assert max(answered) - min(answered) <= 0.2 * max(answered) + 2, answered
