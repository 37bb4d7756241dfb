"""The live view in a real browser: Debian's headless chromium opens the page served by a running
suite (camera -> classifier -> live view on the local IPC core) and the DOM is checked: frames
update, the sample's labels appear, a stopped classifier shows as down. ``/metrics`` is parsed
with prometheus_client's parser and checked against the status figures the components publish.

The screenshots are kept: ``build/liveview/screenshot.png`` (live) and ``screenshot-down.png``.
Without chromium the test skips, unless ``GGV_REQUIRE_BROWSER=1`` (CI), where it fails.
"""

from __future__ import annotations

import base64
import json
import os
import time
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ggvision.testing.agent import AgentProcess
from ggvision.testing.harness import pubsub_policy
from tests.liveview.browser import Browser, chromium_binary
from tests.liveview.conftest import (
    CAMERA,
    CATS,
    CLASSIFIER,
    SHOTS,
    STATUS_TOPICS,
    Suite,
    first_event,
    http_get,
)

TILE = "document.querySelector('.camera')"
FRAME_ID = f"{TILE} && {TILE}.dataset.frameId"
LABELS = f"{TILE} ? [...{TILE}.querySelectorAll('.labels .label')].map(e => e.textContent) : []"


def panel_state(component: str) -> str:
    return f"document.querySelector('.component[data-component=\"{component}\"]')?.dataset.state"


@pytest.fixture
def browser() -> Any:
    binary = chromium_binary()
    if binary is None:
        if os.environ.get("GGV_REQUIRE_BROWSER"):
            pytest.fail("chromium is required (GGV_REQUIRE_BROWSER is set) but not installed")
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    with Browser.launch(binary) as b:
        yield b


def metrics(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    reply = http_get(url + "/metrics")
    assert reply.status == 200
    out = {}
    for family in text_string_to_metric_families(reply.body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def statuses(agent: AgentProcess, subs: list[int], seconds: float) -> list[dict[str, Any]]:
    out = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        for sub in subs:
            for e in agent("events", sub=sub, n=100, timeout=min(left, 0.3))["events"]:
                out.append(json.loads(base64.b64decode(e["binary"])))
    return out


def test_the_page_shows_live_annotated_frames_and_a_stopped_classifier_as_down(
    suite: Suite, browser: Browser
) -> None:
    listener = AgentProcess(
        suite.core.component_env("com.test.Listener", pubsub_policy(subscribe=STATUS_TOPICS))
    )
    subs = [listener("subscribe", topic=t)["sub"] for t in STATUS_TOPICS]
    url = suite.liveview.url
    browser.navigate(url + "/")

    # Frames update: two different frame ids within a few seconds.
    first = browser.wait_for(FRAME_ID, timeout=20)
    second = browser.wait_for(f"{FRAME_ID} !== {json.dumps(first)} && {FRAME_ID}", timeout=5)
    assert first != second
    # The frame is an image the browser decoded, at the camera's size.
    size = browser.evaluate(
        f"[{TILE}.querySelector('img').naturalWidth, {TILE}.querySelector('img').naturalHeight]"
    )
    assert size[0] > 100 and size[1] > 100, size
    # The known sample's labels: chelsea is a tabby.
    labels = browser.wait_for(f"({LABELS}).length && {LABELS}")
    assert labels[0] in CATS, labels
    assert browser.wait_for(panel_state(CLASSIFIER)) == "up"
    assert browser.wait_for(panel_state(CAMERA)) == "up"
    assert browser.evaluate(f"{TILE}.dataset.state") == "up"
    figures = browser.evaluate(f"{TILE}.querySelector('.figures').textContent")
    assert " fps, " in figures and " ms " in figures, figures
    panel = browser.evaluate(
        f"document.querySelector('.component[data-component=\"{CLASSIFIER}\"]').textContent"
    )
    assert "efficientnet" in panel.lower() and "tflite" in panel, panel
    time.sleep(0.5)  # one more frame drawn before the picture is kept
    shot = browser.screenshot(SHOTS / "screenshot.png")
    assert shot.stat().st_size > 10_000

    # /metrics against the statuses the components publish: the scrape names the status it shows.
    # Listening before and after the scrape: the status it shows (published before it, once a
    # second) is among those the listener received.
    reports = statuses(listener, subs, 2.0)
    scraped = metrics(url)
    reports += statuses(listener, subs, 1.5)
    key = (("camera", ""), ("component", CLASSIFIER))
    ts = scraped[("ggvision_component_status_timestamp_seconds", key)]
    shown = [r for r in reports if r["component"] == CLASSIFIER and r["ts"] / 1000 == ts]
    assert shown, (ts, [r["ts"] for r in reports])
    status = shown[0]
    assert scraped[("ggvision_component_up", key)] == 1.0
    assert scraped[("ggvision_component_fps", key)] == pytest.approx(status["fps"])
    assert scraped[("ggvision_component_queue_depth", key)] == status["queue_depth"]
    assert scraped[("ggvision_component_dropped_total", key)] == status["dropped"]
    for q, p in (("0.5", "p50"), ("0.95", "p95")):
        lk = (*key[:1], *key[1:], ("quantile", q))
        assert scraped[("ggvision_component_latency_ms", tuple(sorted(lk)))] == pytest.approx(
            status["latency_ms"][p]
        )
    for code, n in status["errors"].items():
        ek = tuple(sorted((*key, ("code", code))))
        assert scraped[("ggvision_component_errors_total", ek)] == n
    model = status["model"]
    info = tuple(
        sorted(
            (
                *key,
                ("model", model["name"]),
                ("version", model["version"]),
                ("backend", model["backend"]),
                ("precision", model["precision"]),
            )
        )
    )
    assert scraped[("ggvision_component_info", info)] == 1.0
    camera_key = (("camera", "camera"), ("component", CAMERA))
    assert scraped[("ggvision_component_up", camera_key)] == 1.0
    # The live view's own count of the answers: all ok, latencies observed for each.
    ok = scraped[("ggvision_results_total", (("camera", "camera"), ("status", "ok")))]
    assert ok >= 2
    assert scraped[("ggvision_result_latency_seconds_count", (("camera", "camera"),))] >= ok
    assert http_get(url + "/readyz").status == 200

    # No file path of this machine in what the live view serves.
    event = first_event(url + "/events")
    bodies = [
        http_get(url + p).body.decode() for p in ("/", "/live.js", "/api/state", "/metrics")
    ] + [json.dumps({k: v for k, v in event.items() if k != "jpeg"})]
    for body in bodies:
        for path in suite.paths:
            assert path not in body

    # A stopped classifier shows as down: its panel, and the camera's tile (no answers).
    suite.classifier.terminate()
    assert suite.classifier.wait(15) == 0
    assert browser.wait_for(f"{panel_state(CLASSIFIER)} === 'down'", timeout=10)
    assert browser.wait_for(f"{TILE}.dataset.state === 'down'", timeout=10)
    why = browser.evaluate(f"{TILE}.querySelector('.why').textContent")
    assert why.startswith("DOWN"), why
    assert browser.evaluate(panel_state(CAMERA)) == "up"
    browser.screenshot(SHOTS / "screenshot-down.png")
    ready = http_get(url + "/readyz")
    assert ready.status == 503 and ready.json()["ready"] is False
    scraped = metrics(url)
    assert scraped[("ggvision_component_up", key)] == 0.0

    # A stopped camera: its panel down, its tile says so.
    assert suite.camera.stop() == 0
    assert browser.wait_for(f"{panel_state(CAMERA)} === 'down'", timeout=10)
    assert browser.wait_for(f"{TILE}.querySelector('.why').textContent", timeout=5)
    why = browser.evaluate(f"{TILE}.querySelector('.why').textContent")
    assert why == "DOWN: camera down", why
    listener.close()
