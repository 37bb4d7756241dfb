"""Faults: a classifier killed with SIGKILL mid-stream (the runner restarts it; the requester's
bounded retries complete every request, each answered once; under a steady 40/s with a camera
beside, no answer is lost or doubled for the requester and the camera's counts add up), a camera
source that vanishes and returns, a core restart that the running components survive by
reconnecting on their own, and a really full disk under the uplink's outbox (counted drops, no
crash)."""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ggvision.core.server import IpcCore
from ggvision.runner.layout import Layout
from ggvision.runner.recipe import parse_recipe
from ggvision.runner.resolve import resolve
from ggvision.runner.runner import Runner, RunnerOptions
from ggvision.testing.agent import AgentProcess
from ggvision.testing.harness import CoreThread, pubsub_policy
from tests.classifier.conftest import sample_photo
from tests.classifier.test_service import _result, start_classifier

from .conftest import REPO, default_store

CLASSIFIER = "com.custom.ImageClassifier"
REQUESTER = "com.custom.requester"


def component_recipe(name: str, run: str, config: dict[str, Any], **setenv: str) -> Any:
    import yaml

    recipe = yaml.safe_load((REPO / "components" / name / "recipe.yaml").read_text())
    doc = {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": name,
        "ComponentVersion": recipe["ComponentVersion"],
        "ComponentConfiguration": {
            "DefaultConfiguration": {
                **recipe["ComponentConfiguration"]["DefaultConfiguration"],
                **config,
            }
        },
        "Manifests": [{"Platform": {"os": "linux"}, "Lifecycle": {"Setenv": setenv, "Run": run}}],
    }
    return parse_recipe(doc, f"{name}.yaml")


@pytest.fixture
def photos() -> Iterator[Path]:
    from PIL import Image

    folder = Path(tempfile.mkdtemp(prefix="ggv-photos-", dir="/tmp"))
    for name in ("chelsea", "coffee", "rocket"):
        Image.fromarray(sample_photo(name)).resize((320, 240)).save(folder / f"{name}.jpg")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_kill_9_of_the_classifier_mid_stream_loses_no_request(photos: Path) -> None:
    store = default_store()
    root = Path(tempfile.mkdtemp(prefix="ggv", dir="/tmp"))
    out = root / "results.jsonl"
    pidfile = root / "classifier.pid"
    repeat = 60  # 180 requests: the kill lands mid-stream
    classifier = component_recipe(
        CLASSIFIER,
        f"echo $$ > {pidfile}; exec {sys.executable} -u -m ggvision_classifier",
        {"allowedDirectories": [str(photos)], "threads": 1},
        GGV_MODEL_STORE=str(store),
    )
    requester = component_recipe(
        REQUESTER,
        f"exec {sys.executable} -u -m ggvision_requester",
        {
            "imageDirectory": str(photos),
            "repeat": repeat,
            "maxInFlight": 2,
            "intervalS": 0.02,
            "timeoutS": 1.5,
            "retries": 8,
            "backoffS": 0.2,
            "maxBackoffS": 1.0,
            "outputJsonl": str(out),
        },
    )
    killed: list[int] = []

    async def scenario() -> dict[str, Any]:
        layout = Layout.at(root)
        core = IpcCore(layout.ipc_socket)
        runner = Runner(
            core,
            resolve([classifier, requester]),
            RunnerOptions(layout=layout, restart_backoff_s=0.2, stop_timeout_s=5.0),
        )
        await core.start()
        try:
            await runner.start()
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # some answers in, then SIGKILL
                if out.exists() and len(out.read_text().splitlines()) >= 20:
                    break
                await asyncio.sleep(0.05)
            pid = int(pidfile.read_text())
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            while time.monotonic() < deadline and core.state_of(REQUESTER) != "FINISHED":
                await asyncio.sleep(0.1)
            return {s.name: s for s in runner.summary()}
        finally:
            await runner.stop()
            await core.stop()

    try:
        summary = asyncio.run(scenario())
        records = [json.loads(line) for line in out.read_text().splitlines()]
        restarted_pid = int(pidfile.read_text())
    finally:
        shutil.rmtree(root, ignore_errors=True)
    assert summary[REQUESTER].state == "FINISHED"
    assert summary[REQUESTER].last_exit == 0  # every request answered
    assert summary[CLASSIFIER].starts == 2, "the runner restarted the killed classifier once"
    assert restarted_pid != killed[0]
    assert len(records) == 3 * repeat
    assert len({r["id"] for r in records}) == len(records)  # exactly one outcome per request
    assert [r for r in records if r["status"] != "ok"] == []
    assert any(r["attempts"] > 1 for r in records), "no request needed a retry: killed too late?"
    retried = sum(r["attempts"] > 1 for r in records)
    print(f"\n[faults] kill -9: {len(records)} requests all ok; {retried} needed a retry")


CAMERA = "com.custom.CameraSource"


def _message(event: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON object a pub/sub event carries (JSON or binary message)."""
    if "jsonMessage" in event:
        msg = event["jsonMessage"].get("message")
    else:
        try:
            msg = json.loads(base64.b64decode(event["binaryMessage"]["message"]))
        except (KeyError, ValueError, TypeError):
            return None
    return msg if isinstance(msg, dict) else None


class Wire:
    """Every request and answer the core routes (observed in-process, as ``--watch`` does):
    request messages per id and publisher, answers per id, the status reports."""

    def __init__(self) -> None:
        self.requests: collections.Counter[str] = collections.Counter()  # attempts per id
        self.sender: dict[str, str] = {}
        self.answers: collections.Counter[str] = collections.Counter()
        self.answered_at: dict[str, float] = {}
        self.status: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)

    def attach(self, core: IpcCore) -> None:
        core.pubsub.observe("local/inference", self._request)
        core.pubsub.observe("local/result", self._answer)
        core.pubsub.observe("local/status/#", self._status)

    def _request(self, publisher: str, topic: str, event: dict[str, Any]) -> None:
        msg = _message(event)
        if msg is not None and isinstance(msg.get("id"), str):
            self.requests[msg["id"]] += 1
            self.sender[msg["id"]] = publisher

    def _answer(self, publisher: str, topic: str, event: dict[str, Any]) -> None:
        msg = _message(event)
        if msg is not None and isinstance(msg.get("id"), str):
            self.answers[msg["id"]] += 1
            self.answered_at.setdefault(msg["id"], time.monotonic())

    def _status(self, publisher: str, topic: str, event: dict[str, Any]) -> None:
        msg = _message(event)
        if msg is not None:
            self.status[publisher].append(msg)

    def ids_of(self, component: str) -> set[str]:
        return {rid for rid, who in self.sender.items() if who == component}


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_kill_9_under_steady_load_no_answer_lost_or_doubled_and_the_camera_counts_add_up(
    photos: Path,
) -> None:
    """40 requests/s from the requester plus a 10 fps camera; the classifier is killed with
    SIGKILL mid-stream and restarted by the runner. Delivery is at most once: the requests in
    flight and those published while no classifier is subscribed get no answer. The requester
    retries (same id) until each of its requests has exactly one outcome, all ok; the camera does
    not retry a perishable frame but counts each request exactly once."""
    store = default_store()
    root = Path(tempfile.mkdtemp(prefix="ggv", dir="/tmp"))
    frames = root / "frames"
    frames.mkdir()
    out = root / "results.jsonl"
    pidfile = root / "classifier.pid"
    repeat = 50  # 150 requests at 40/s: a run of ~4 s plus the outage
    classifier = component_recipe(
        CLASSIFIER,
        f"echo $$ > {pidfile}; exec {sys.executable} -u -m ggvision_classifier",
        {
            "allowedDirectories": [str(photos)],
            "frameDirectory": str(frames),
            "threads": 1,
            "statusIntervalSeconds": 0.5,
        },
        GGV_MODEL_STORE=str(store),
    )
    requester = component_recipe(
        REQUESTER,
        f"exec {sys.executable} -u -m ggvision_requester",
        {
            "imageDirectory": str(photos),
            "repeat": repeat,
            "maxInFlight": 8,
            "intervalS": 0.025,  # 40 requests/s
            "timeoutS": 1.0,
            "retries": 10,
            "backoffS": 0.1,
            "maxBackoffS": 0.5,
            "outputJsonl": str(out),
        },
    )
    camera = component_recipe(
        CAMERA,
        f"exec {sys.executable} -u -m ggvision_camera",
        {
            "source": {"type": "synthetic", "width": 320, "height": 240},
            "fps": 10.0,
            "maxInFlight": 2,
            "resultTimeoutSeconds": 1.0,
            "ringDirectory": str(frames),
            "statusIntervalSeconds": 0.5,
        },
    )
    wire = Wire()
    killed_at: list[float] = []

    def answered_ok(ids: set[str]) -> int:
        return sum(1 for rid in ids if wire.answers[rid])

    async def scenario() -> dict[str, Any]:
        layout = Layout.at(root)
        core = IpcCore(layout.ipc_socket)
        wire.attach(core)
        runner = Runner(
            core,
            resolve([classifier, requester, camera]),
            RunnerOptions(layout=layout, restart_backoff_s=0.2, stop_timeout_s=10.0),
        )
        await core.start()
        try:
            await runner.start()
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline:  # answers flowing to both clients, then SIGKILL
                if answered_ok(wire.ids_of(REQUESTER)) >= 40 and answered_ok(wire.ids_of(CAMERA)):
                    break
                await asyncio.sleep(0.02)
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
            killed_at.append(time.monotonic())
            while time.monotonic() < deadline and core.state_of(REQUESTER) != "FINISHED":
                await asyncio.sleep(0.1)
            while time.monotonic() < deadline and not any(  # the camera is answered again
                at > killed_at[0] + 0.5
                for rid, at in wire.answered_at.items()
                if wire.sender.get(rid) == CAMERA
            ):
                await asyncio.sleep(0.1)
            return {s.name: s for s in runner.summary()}
        finally:
            await runner.stop()  # the camera first (dependents first: the plan reversed)
            await core.stop()

    try:
        summary = asyncio.run(scenario())
        records = [json.loads(line) for line in out.read_text().splitlines()]
    finally:
        shutil.rmtree(root, ignore_errors=True)

    # The figures, measured on the wire and by the components themselves.
    req_ids, cam_ids = wire.ids_of(REQUESTER), wire.ids_of(CAMERA)
    attempts = sum(wire.requests[rid] for rid in req_ids)
    unanswered_attempts = sum(max(0, wire.requests[rid] - wire.answers[rid]) for rid in req_ids)
    doubled = {rid: n for rid in req_ids if (n := wire.answers[rid]) > 1}
    [req_summary] = [m for m in wire.status[REQUESTER] if m.get("type") == "summary"]
    cam = wire.status[CAMERA][-1]
    cam_requests = cam["requests"]
    clf = wire.status[CLASSIFIER][-1]  # the restarted classifier's last report
    print(
        f"\n[faults] kill -9 at 40/s: requester {len(req_ids)} ids, {attempts} attempts, "
        f"{unanswered_attempts} attempts unanswered on the wire (the crash), "
        f"{len(doubled)} ids answered twice on the wire (ignored: requester duplicates "
        f"{req_summary['duplicates']}), {len(records)} outcomes "
        f"({sum(r['status'] == 'ok' for r in records)} ok, "
        f"{sum(r['attempts'] > 1 for r in records)} retried); camera {cam_requests}, "
        f"late {cam['late']}; restarted classifier received {clf.get('received')}, "
        f"duplicates {clf.get('duplicates')}"
    )
    assert summary[CLASSIFIER].starts == 2, "the runner restarted the killed classifier once"
    assert summary[REQUESTER].state == "FINISHED" and summary[REQUESTER].last_exit == 0
    # The crash lost answers (at most once) ...
    assert unanswered_attempts > 0, "the kill lost nothing: killed too late?"
    # ... and the requester's retries make up for them: one outcome per id, none lost or doubled
    assert len(records) == len(req_ids) == 3 * repeat
    assert sorted(r["id"] for r in records) == sorted(req_ids)
    assert [r for r in records if r["status"] != "ok"] == []
    assert all(wire.answers[rid] >= 1 for rid in req_ids)
    assert req_summary["count"] == req_summary["ok"] == 3 * repeat
    assert req_summary["timeouts"] == req_summary["unanswered"] == 0
    # The camera counts every request exactly once; what the crash cost it shows as unanswered.
    parts = ("ok", "error", "publish_failed", "unanswered", "in_flight")
    assert cam_requests["sent"] == sum(cam_requests[k] for k in parts), cam_requests
    assert cam_requests["in_flight"] == 0, "the last report counts what was left as unanswered"
    assert cam_requests["unanswered"] > 0, "the crash cost the camera no frame request?"
    assert cam_requests["publish_failed"] == 0
    assert (
        cam_requests["sent"]
        == cam["sent"]
        == len(cam_ids)
        == sum(wire.requests[r] for r in cam_ids)
    )
    assert cam["answered"] == cam_requests["ok"] + cam_requests["error"]
    assert cam["answered"] + cam["late"] <= answered_ok(cam_ids)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_requester_retrying_before_the_answer_costs_no_double_work(photos: Path) -> None:
    """Retries that overtake their answer (a timeout shorter than the classifier's latency):
    each id is run by the model once; a retry of a request still queued or in flight is
    answered by its one answer, one of a request answered already gets that answer again."""
    store = default_store()
    root = Path(tempfile.mkdtemp(prefix="ggv", dir="/tmp"))
    out = root / "results.jsonl"
    ready = root / "classifier-ready"
    n = 30
    classifier = component_recipe(
        CLASSIFIER,
        f"exec {sys.executable} -u -m ggvision_classifier",
        {"allowedDirectories": [str(photos)], "threads": 1, "statusIntervalSeconds": 0.3},
        GGV_MODEL_STORE=str(store),
    )
    requester = component_recipe(
        REQUESTER,
        # once the classifier serves: requests it never saw are not what this test is about
        f"until [ -e {ready} ]; do sleep 0.05; done; "
        f"exec {sys.executable} -u -m ggvision_requester",
        {
            "imageDirectory": str(photos),
            "repeat": n // 3,
            "maxInFlight": 2,
            "timeoutS": 0.001,  # below any latency: requests are retried while they run
            "retries": 20,
            "backoffS": 0.002,  # 0.002, 0.004, ... 0.1: 20 retries span ~1.5 s
            "maxBackoffS": 0.1,
            "outputJsonl": str(out),
        },
    )
    wire = Wire()

    async def scenario() -> dict[str, Any]:
        layout = Layout.at(root)
        core = IpcCore(layout.ipc_socket)
        wire.attach(core)
        runner = Runner(core, resolve([classifier, requester]), RunnerOptions(layout=layout))
        await core.start()
        try:
            await runner.start()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not wire.status[CLASSIFIER]:
                await asyncio.sleep(0.05)
            ready.touch()
            while time.monotonic() < deadline and core.state_of(REQUESTER) != "FINISHED":
                await asyncio.sleep(0.1)
            sent = sum(wire.requests.values())
            while time.monotonic() < deadline and not any(  # a report that counts them all
                m.get("received") == sent for m in wire.status[CLASSIFIER]
            ):
                await asyncio.sleep(0.1)
            return {s.name: s for s in runner.summary()}
        finally:
            await runner.stop()
            await core.stop()

    try:
        summary = asyncio.run(scenario())
        records = [json.loads(line) for line in out.read_text().splitlines()]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    ids = wire.ids_of(REQUESTER)
    attempts = sum(wire.requests[rid] for rid in ids)
    answers = sum(wire.answers[rid] for rid in ids)
    clf = wire.status[CLASSIFIER][-1]
    print(
        f"\n[faults] early retries: {len(ids)} ids, {attempts} attempts, {answers} answers on "
        f"the wire; classifier received {clf['received']}, ran the model {clf['ok']} times, "
        f"duplicates {clf['duplicates']}"
    )
    assert summary[REQUESTER].last_exit == 0
    assert len(records) == len(ids) == n and {r["id"] for r in records} == ids
    assert [r for r in records if r["status"] != "ok"] == []
    assert attempts > n, "no request was retried: the test proves nothing"
    assert clf["received"] == attempts
    assert clf["ok"] == n, "a retried request ran the model again"
    dup = clf["duplicates"]
    assert clf["received"] == clf["ok"] + dup["in_flight"] + dup["answered"]
    assert answers == n + dup["answered"], "a duplicate in flight got an answer of its own"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_components_reconnect_after_a_core_restart(photos: Path) -> None:
    store = default_store()
    with CoreThread() as core:
        proc = start_classifier(core, store, {"allowedDirectories": [str(photos)]})
        request = {"image": {"path": str(photos / "coffee.jpg")}}
        # the restarted core keeps every registered token: one requester identity for both
        requester = core.component_env(
            "com.test.Requester",
            pubsub_policy(publish=["local/inference"], subscribe=["local/result"]),
        )
        try:
            with AgentProcess(requester) as agent:
                sub = agent("subscribe", topic="local/result")["sub"]
                agent("publish", topic="local/inference", json={"id": "before", **request})
                events = agent("events", sub=sub, timeout=20)["events"]
                assert [_result(e)["id"] for e in events] == ["before"]
            core.restart(down_s=1.5)  # a few reconnect attempts fail first
            with AgentProcess(requester) as agent:
                sub = agent("subscribe", topic="local/result")["sub"]
                answered: list[str] = []
                deadline = time.monotonic() + 30
                n = 0
                while not answered and time.monotonic() < deadline:
                    n += 1
                    agent("publish", topic="local/inference", json={"id": f"after-{n}", **request})
                    events = agent("events", sub=sub, timeout=1)["events"]
                    answered = [r["id"] for r in map(_result, events) if r["status"] == "ok"]
                assert answered, "the classifier never came back after the core restart"
            assert core.state_of(CLASSIFIER) == "RUNNING"  # reported again on reconnect
            assert proc.poll() is None, "the classifier process itself was not restarted"
        finally:
            proc.terminate()
            proc.wait(15)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_camera_source_that_vanishes_and_returns_resumes_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("cv2", reason="install extra [opencv]: opencv-python-headless")
    from tests.camera.conftest import CameraProcess, collect, photo_video_frames, write_video

    store = default_store()
    frames = tmp_path / "frames"
    frames.mkdir()
    video = write_video(tmp_path / "clip.avi", photo_video_frames())
    with CoreThread() as core:
        listener = AgentProcess(
            core.component_env("com.test.Listener", pubsub_policy(subscribe=["local/result"]))
        )
        results = listener("subscribe", topic="local/result")["sub"]
        classifier = start_classifier(
            core, store, {"frameDirectory": str(frames), "queueSize": 4, "threads": 1}
        )
        overrides = {
            "source": {"type": "video", "path": str(video)},
            "fps": 10,
            "maxInFlight": 2,
            "ringDirectory": str(frames),
            "reconnectInitialSeconds": 0.2,
            "reconnectMaxSeconds": 0.5,
        }
        try:
            with CameraProcess(core, overrides) as camera:
                camera.wait_running()
                before = collect(listener, results, time.monotonic() + 2.0)
                video.rename(tmp_path / "gone.avi")  # the file plays to its end, then is missed
                deadline = time.monotonic() + 15
                while not any(r["event"] == "camera.reconnecting" for r in camera.logs()):
                    assert time.monotonic() < deadline, "the camera never missed its source"
                    time.sleep(0.1)
                collect(listener, results, time.monotonic() + 1.0)  # in flight: drained
                gone = collect(listener, results, time.monotonic() + 1.0)
                assert camera.proc.poll() is None, "the camera died with its source"
                (tmp_path / "gone.avi").rename(video)
                after = collect(listener, results, time.monotonic() + 3.0)
                assert camera.stop() == 0
                events = [r["event"] for r in camera.logs()]
        finally:
            listener.close()
            classifier.terminate()
            classifier.wait(15)
    assert before and all(r["status"] == "ok" for r in before)
    assert gone == [], "results while the source was gone"
    assert after, "no results after the source came back"
    assert events.count("camera.reconnecting") == 1
    assert events.count("camera.streaming") == 2  # at the start, and again once it was back
    assert all(r["status"] == "ok" and r["source"] == "camera" for r in after)
    print(f"\n[faults] camera: {len(before)} results, source gone, {len(after)} after its return")


@pytest.fixture
def tiny_disk() -> Iterator[Path]:
    """A real 128 KB filesystem (tmpfs) that fills up: needs root, as CI runs."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    mnt = Path(tempfile.mkdtemp(prefix="ggv-full-", dir="/tmp"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        # Lazy: a file still open (a failed test) must not keep the mount alive.
        subprocess.run(["umount", "-l", str(mnt)], check=False)
        shutil.rmtree(mnt, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_full_disk_under_the_uplink_outbox_counts_drops_and_keeps_serving(
    photos: Path, tiny_disk: Path
) -> None:
    store = default_store()
    status_topic = f"local/status/{CLASSIFIER}"
    n = 200
    with CoreThread() as core:  # no IoT Core bridge: every uplink publish fails, results buffer
        proc = start_classifier(
            core,
            store,
            {
                "allowedDirectories": [str(photos)],
                "queueSize": n,
                "statusIntervalSeconds": 0.3,
                "uplink": {
                    "enabled": True,
                    "outboxPath": str(tiny_disk / "outbox.sqlite3"),
                    "publishTimeoutSeconds": 1.0,
                    "retryMaxSeconds": 1.0,
                },
            },
        )
        try:
            with AgentProcess(
                core.component_env(
                    "com.test.Requester",
                    pubsub_policy(
                        publish=["local/inference"], subscribe=["local/result", status_topic]
                    ),
                )
            ) as agent:
                results = agent("subscribe", topic="local/result")["sub"]
                status = agent("subscribe", topic=status_topic)["sub"]
                path = str(photos / "coffee.jpg")
                for i in range(n):
                    agent(
                        "publish",
                        topic="local/inference",
                        json={"id": f"d{i}", "image": {"path": path}},
                    )
                got: dict[str, str] = {}
                deadline = time.monotonic() + 60
                while len(got) < n and time.monotonic() < deadline:
                    for e in agent("events", sub=results, n=n, timeout=1)["events"]:
                        r = _result(e)
                        assert r["id"] not in got
                        got[r["id"]] = r["status"]
                uplink: dict[str, Any] = {}
                while time.monotonic() < deadline and not uplink.get("dropped_full"):
                    for e in agent("events", sub=status, n=1, timeout=1)["events"]:
                        uplink = _result(e).get("uplink", uplink)
                agent(
                    "publish",
                    topic="local/inference",
                    json={"id": "after", "image": {"path": path}},
                )
                after = [_result(e) for e in agent("events", sub=results, timeout=20)["events"]]
            assert proc.poll() is None, "the classifier died of a full disk"
        finally:
            proc.terminate()
            proc.wait(15)
    assert len(got) == n and set(got.values()) == {"ok"}, "local answers must not suffer"
    assert uplink.get("dropped_full", 0) > 0, uplink
    assert uplink["buffered"] > 0 and uplink["online"] is False
    assert [r["status"] for r in after] == ["ok"]
    print(f"\n[faults] full disk: {n} answered ok; uplink {uplink}")


def test_the_outbox_on_a_really_full_disk_drops_counted_without_raising(tiny_disk: Path) -> None:
    from ggvision.uplink import Outbox

    box = Outbox(tiny_disk / "o.sqlite3", max_messages=100_000, max_bytes=64 << 20)
    kept = sum(box.put("t", b"x" * 400) for _ in range(600))  # never raises
    assert 0 < kept < 600
    assert box.dropped_full > 0
    assert kept - box.evicted == len(box) > 0
    box.close()
