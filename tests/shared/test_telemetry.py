"""Status reports and Greengrass telemetry: the figures and their forms, a StatusReporter over the
real IPC client, and the CameraSource and requester components publishing both."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ggvision.bus import IpcBus
from ggvision.telemetry import (
    TELEMETRY_TOPIC,
    Health,
    RateMeter,
    StatusReporter,
    telemetry_metrics,
)
from ggvision.testing.agent import AgentProcess
from ggvision.testing.harness import CoreThread, pubsub_policy
from tests.camera.conftest import CameraProcess

REPO = Path(__file__).resolve().parents[2]


def decode(event: dict[str, Any]) -> Any:
    return event["json"] if "json" in event else json.loads(base64.b64decode(event["binary"]))


def test_rate_meter_counts_per_second_between_reads() -> None:
    now = [100.0]
    meter = RateMeter(clock=lambda: now[0])
    now[0] = 102.0
    assert meter.rate(10) == 5.0
    now[0] = 103.0
    assert meter.rate(13) == 3.0
    assert meter.rate(13) == 0.0  # no time passed


def test_telemetry_is_the_nucleus_form_with_every_figure() -> None:
    health = Health(
        fps=9.5,
        latency_p50_ms=30.0,
        latency_p95_ms=45.5,
        queue_depth=2,
        dropped=3,
        errors={"IMAGE_NOT_FOUND": 1, "OVERLOADED": 4},
        state="ERRORED",
    )
    metrics = telemetry_metrics("com.x.C", health, 12.0, 1700000000000)
    assert all(set(m) == {"NS", "N", "U", "A", "V", "TS"} for m in metrics)
    assert all(m["NS"] == "GreengrassVision" and m["TS"] == 1700000000000 for m in metrics)
    by_name = {m["N"]: (m["V"], m["U"]) for m in metrics}
    assert by_name == {
        "com.x.C.Fps": (9.5, "Count/Second"),
        "com.x.C.QueueDepth": (2, "Count"),
        "com.x.C.Dropped": (3, "Count"),
        "com.x.C.Errors": (5, "Count"),
        "com.x.C.UptimeSeconds": (12.0, "Seconds"),
        "com.x.C.Healthy": (0, "Count"),
        "com.x.C.LatencyP50": (30.0, "Milliseconds"),
        "com.x.C.LatencyP95": (45.5, "Milliseconds"),
        "com.x.C.Errors.IMAGE_NOT_FOUND": (1, "Count"),
        "com.x.C.Errors.OVERLOADED": (4, "Count"),
    }


def test_telemetry_counts_a_classifiers_learned_classes() -> None:
    health = Health(extra={"learning": {"classes": 3, "shots": 14, "mode": "extend"}})
    by_name = {m["N"]: (m["V"], m["U"], m["A"]) for m in telemetry_metrics("c", health, 1.0, 0)}
    assert by_name["c.LearnedClasses"] == (3, "Count", "Maximum")
    assert by_name["c.LearnedShots"] == (14, "Count", "Maximum")
    assert "c.LearnedClasses" not in {m["N"] for m in telemetry_metrics("c", Health(), 1.0, 0)}


@pytest.fixture
def listener(core: CoreThread) -> Iterator[AgentProcess]:
    agent = AgentProcess(
        core.component_env(
            "com.test.Listener", pubsub_policy(subscribe=["local/status/*", TELEMETRY_TOPIC])
        )
    )
    yield agent
    agent.close()


def test_a_reporter_over_the_real_ipc_client(
    core: CoreThread, listener: AgentProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    statuses = listener("subscribe", topic="local/status/com.test.Thing")["sub"]
    telemetry = listener("subscribe", topic=TELEMETRY_TOPIC)["sub"]
    acl = pubsub_policy(publish=["local/status/com.test.Thing", TELEMETRY_TOPIC])
    for key, value in core.component_env("com.test.Thing", acl).items():
        monkeypatch.setenv(key, value)
    bus = IpcBus()
    calls = [0]

    def collect() -> Health:
        calls[0] += 1
        return Health(fps=float(calls[0]), queue_depth=1, extra={"custom": "yes"})

    reporter = StatusReporter(bus, "com.test.Thing", collect, interval_s=0.1)
    try:
        reporter.start()
        reports = [decode(e) for e in listener("events", sub=statuses, n=3, timeout=5)["events"]]
        reporter.stop(final=True)
    finally:
        bus.close()
    metrics = [decode(e) for e in listener("events", sub=telemetry, n=3, timeout=5)["events"]]
    assert len(reports) >= 3 and len(metrics) >= 3
    first = reports[0]
    assert first["component"] == "com.test.Thing" and first["custom"] == "yes"
    assert first["type"] == "status" and first["state"] == "RUNNING"
    assert [r["fps"] for r in reports[:3]] == [1.0, 2.0, 3.0]
    assert {m["N"]: m["V"] for m in metrics[0]}["com.test.Thing.Fps"] == 1.0


def test_a_reporter_without_permission_logs_and_keeps_going(
    core: CoreThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in core.component_env("com.test.Mute", {}).items():
        monkeypatch.setenv(key, value)
    bus = IpcBus()
    try:
        reporter = StatusReporter(bus, "com.test.Mute", Health, interval_s=60)
        status = reporter.report(wait_s=2.0)
        again = reporter.report(wait_s=2.0)
    finally:
        bus.close()
    assert status["component"] == again["component"] == "com.test.Mute"


def test_the_camera_publishes_status_and_telemetry(
    core: CoreThread, listener: AgentProcess, tmp_path: Path
) -> None:
    statuses = listener("subscribe", topic="local/status/com.custom.CameraSource")["sub"]
    telemetry = listener("subscribe", topic=TELEMETRY_TOPIC)["sub"]
    overrides = {"ringDirectory": str(tmp_path), "statusIntervalSeconds": 0.2, "fps": 20}
    with CameraProcess(core, overrides) as camera:
        camera.wait_running()
        reports = [decode(e) for e in listener("events", sub=statuses, n=2, timeout=5)["events"]]
        metrics = [decode(e) for e in listener("events", sub=telemetry, n=2, timeout=5)["events"]]
        assert camera.stop() == 0
    assert reports[0]["component"] == "com.custom.CameraSource"
    assert reports[0]["camera"] == "camera"  # the camera's own keys are kept
    names = {m["N"] for m in metrics[0]}
    assert {"com.custom.CameraSource.Fps", "com.custom.CameraSource.QueueDepth"} <= names
    assert all(set(m) == {"NS", "N", "U", "A", "V", "TS"} for m in metrics[0])


def test_the_requester_publishes_status_while_it_runs(
    core: CoreThread, listener: AgentProcess, tmp_path: Path
) -> None:
    """A requester with nobody answering (every request times out and is retried) reports its
    in-flight requests and the timeouts while it runs."""
    import yaml

    recipe = yaml.safe_load((REPO / "components/com.custom.requester/recipe.yaml").read_text())
    cfg = recipe["ComponentConfiguration"]["DefaultConfiguration"]
    image = tmp_path / "a.jpg"
    image.write_bytes(b"\xff\xd8 not really")
    cfg = {
        **cfg,
        "images": [str(image)],
        "repeat": 0,
        "intervalS": 0.05,
        "timeoutS": 0.2,
        "retries": 0,
        "statusIntervalSeconds": 0.2,
    }
    statuses = listener("subscribe", topic="local/status/com.custom.requester")["sub"]
    telemetry = listener("subscribe", topic=TELEMETRY_TOPIC)["sub"]
    env = core.component_env("com.custom.requester", configuration=cfg)
    proc = subprocess.Popen([sys.executable, "-m", "ggvision_requester"], env=env, cwd=tmp_path)
    try:
        reports: list[dict[str, Any]] = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not any(
            r.get("errors", {}).get("TIMEOUT") for r in reports
        ):
            events = listener("events", sub=statuses, n=1, timeout=1)["events"]
            reports += [r for r in map(decode, events) if r.get("type") == "status"]
        metrics = [decode(e) for e in listener("events", sub=telemetry, n=1, timeout=5)["events"]]
    finally:
        proc.terminate()
        proc.wait(15)
    timed_out = [r for r in reports if r["errors"].get("TIMEOUT")]
    assert timed_out, reports[-3:]
    assert timed_out[-1]["component"] == "com.custom.requester" and timed_out[-1]["count"] > 0
    names = {m["N"] for m in metrics[0]}
    assert {"com.custom.requester.Fps", "com.custom.requester.QueueDepth"} <= names
