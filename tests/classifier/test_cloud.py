"""The classifier and AWS IoT Core through the core's bridge to a real mosquitto broker: results
uplinked with an on-disk outbox across a broker outage and a restart, and model-switch commands.
The classifier runs with its recipe's accessControl, so the recipe's grants are tested too."""

from __future__ import annotations

import json
import queue
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ggvision.core.environment import DEFAULT_THING_NAME
from ggvision.core.mqtt import MqttBridge, parse_broker
from ggvision.testing.agent import AgentProcess
from ggvision.testing.harness import CoreThread, pubsub_policy
from tests.classifier.conftest import require_runtime
from tests.classifier.test_service import NAME, _result, start_classifier
from tests.conftest import Mosquitto
from tests.core.test_iotcore import CloudClient

RESULTS = f"ggvision/{DEFAULT_THING_NAME}/results"
COMMANDS = f"ggvision/{DEFAULT_THING_NAME}/classifier/command"


class Cloudy:
    def __init__(self, core: CoreThread, broker: Mosquitto, store: Path, tmp: Path) -> None:
        self.core, self.broker, self.store, self.tmp = core, broker, store, tmp
        self.images = tmp / "images"
        self.outbox = tmp / "outbox.sqlite3"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.requester = AgentProcess(
            core.component_env(
                "com.test.Requester",
                pubsub_policy(publish=["local/inference"], subscribe=["local/result"]),
            )
        )
        self.results = self.requester("subscribe", topic="local/result")["sub"]

    def start(self, **overrides: Any) -> subprocess.Popen[bytes]:
        cfg = {
            "allowedDirectories": [str(self.images)],
            "modelKey": "tflite-int8",
            "threads": 1,
            "queueSize": 100,
            "statusIntervalSeconds": 0.3,
            "uplink": {
                "enabled": True,
                "outboxPath": str(self.outbox),
                "retryMaxSeconds": 1.0,
                "publishTimeoutSeconds": 3.0,
            },
            **overrides,
        }
        proc = start_classifier(self.core, self.store, cfg)
        self.procs.append(proc)
        return proc

    def classify(self, ids: list[str], photo: str = "coffee.jpg") -> dict[str, dict[str, Any]]:
        for rid in ids:
            request = {"id": rid, "image": {"path": str(self.images / photo)}}
            self.requester("publish", topic="local/inference", json=request)
        got: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + 60
        while not set(ids) <= set(got) and time.monotonic() < deadline:
            for e in self.requester("events", sub=self.results, n=len(ids), timeout=1)["events"]:
                r = _result(e)
                got[r["id"]] = r
        assert set(ids) <= set(got), "local results missing"
        return got

    def close(self) -> None:
        self.requester.close()
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                p.wait(15)


@pytest.fixture
def cloudy(mosquitto: Mosquitto, store: Path, photo_files: dict[str, Path]) -> Iterator[Cloudy]:
    require_runtime("ai_edge_litert")
    tmp = Path(tempfile.mkdtemp(prefix="ggv-cloud-", dir="/tmp"))
    (tmp / "images").mkdir()
    for path in photo_files.values():
        shutil.copy(path, tmp / "images" / path.name)
    host, port = parse_broker(mosquitto.address)
    with CoreThread(iot=MqttBridge(host, port, ack_timeout_s=3.0)) as core:
        c = Cloudy(core, mosquitto, store, tmp)
        try:
            yield c
        finally:
            c.close()
    shutil.rmtree(tmp, ignore_errors=True)


def received(cloud: CloudClient, n: int, timeout: float) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        try:
            topic, payload = cloud.messages.get(timeout=0.5)
        except queue.Empty:
            continue
        out.append((topic, json.loads(payload)))
    return out


def outbox_rows(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])


def test_results_reach_iot_core_and_survive_an_outage_and_a_restart(cloudy: Cloudy) -> None:
    cloud = CloudClient(cloudy.broker)
    try:
        cloud.subscribe("ggvision/+/results")
        proc = cloudy.start()
        online = [f"on-{i}" for i in range(3)]
        local = cloudy.classify(online)
        got = received(cloud, 3, 20)
    finally:
        cloud.close()
    assert [t for t, _ in got] == [RESULTS] * 3
    assert [p["request_id"] for _, p in got] == online
    first = got[0][1]
    assert first["model"] == {"name": "efficientnet-lite0", "version": "1.0.0", "backend": "tflite"}
    assert first["top"][0]["label"] == local["on-0"]["predictions"][0]["label"] == "espresso"
    assert len(first["top"]) == 3 and first["thing"] == DEFAULT_THING_NAME

    # IoT Core unreachable: results are answered locally and kept on disk.
    cloudy.broker.stop()
    offline = [f"off-{i}" for i in range(20)]
    assert all(r["status"] == "ok" for r in cloudy.classify(offline).values())
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and outbox_rows(cloudy.outbox) < len(offline):
        time.sleep(0.2)
    proc.terminate()
    assert proc.wait(20) == 0
    assert outbox_rows(cloudy.outbox) == len(offline)

    # Broker and component back: every buffered result arrives, in order, with its ids.
    cloudy.broker.start()
    cloud = CloudClient(cloudy.broker)
    try:
        cloud.subscribe("ggvision/+/results")
        cloudy.start()
        got = received(cloud, len(offline), 60)
        # At least once: a copy the bridge's MQTT client re-sent may come too; wait for all ids.
        deadline = time.monotonic() + 30
        while {p["request_id"] for _, p in got} < set(offline) and time.monotonic() < deadline:
            got += received(cloud, 1, 1)
    finally:
        cloud.close()
    ids = [p["request_id"] for _, p in got]
    assert set(ids) == set(offline), f"missing {set(offline) - set(ids)}"
    assert list(dict.fromkeys(ids)) == offline  # drained oldest first
    first_copies = {p["request_id"]: p["result_id"] for _, p in reversed(got)}
    assert len(set(first_copies.values())) == len(offline)  # one result_id per result
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and outbox_rows(cloudy.outbox):
        time.sleep(0.2)
    assert outbox_rows(cloudy.outbox) == 0


def test_filters_and_sampling_choose_what_goes_up(cloudy: Cloudy) -> None:
    cloud = CloudClient(cloudy.broker)
    try:
        cloud.subscribe("ggvision/+/results")
        cloudy.start(
            uplink={
                "enabled": True,
                "outboxPath": str(cloudy.outbox),
                "labels": ["espresso"],
                "minScore": 0.1,
                "every": 2,
            }
        )
        cloudy.classify([f"cat-{i}" for i in range(4)], photo="chelsea.jpg")
        cloudy.classify([f"cup-{i}" for i in range(4)], photo="coffee.jpg")
        got = received(cloud, 3, 5)
    finally:
        cloud.close()
    assert [p["request_id"] for _, p in got] == ["cup-0", "cup-2"]


def test_a_cloud_command_switches_among_store_models_only(cloudy: Cloudy) -> None:
    require_runtime("onnxruntime")
    cloud = CloudClient(cloudy.broker)
    try:
        cloud.subscribe(f"{COMMANDS}/reply")
        cloudy.start(commandTopic="ggvision/{thing}/classifier/command", uplink={})
        refused = [
            {"id": "url", "model": "https://example.com/evil.tflite"},
            {"id": "path", "model": "/etc"},
            {"id": "dots", "model": "../model-store/tflite-int8"},
            {"id": "backend", "model": "onnx-int8", "backend": "sh"},
        ]
        for cmd in refused:
            cloud.publish(COMMANDS, json.dumps(cmd).encode())
        cloud.publish(COMMANDS, b"not json")
        replies = received(cloud, len(refused) + 1, 20)
        assert cloudy.core.get_config(NAME)["modelKey"] == "tflite-int8"
        cloud.publish(COMMANDS, json.dumps({"id": "ok", "model": "onnx-int8"}).encode())
        [(topic, accepted)] = received(cloud, 1, 30)
    finally:
        cloud.close()
    assert {r["id"]: r["status"] for _, r in replies if r["id"]} == {
        "url": "rejected",
        "path": "rejected",
        "dots": "rejected",
        "backend": "rejected",
    }
    assert all("reason" in r for _, r in replies)
    assert any("not in the model store" in r["reason"] for _, r in replies if r["id"] == "url")
    assert (topic, accepted["id"], accepted["status"]) == (f"{COMMANDS}/reply", "ok", "accepted")
    assert cloudy.core.get_config(NAME)["modelKey"] == "onnx-int8"
    deadline = time.monotonic() + 20
    backend = None
    n = 0
    while time.monotonic() < deadline and backend != "onnx":
        n += 1
        backend = cloudy.classify([f"after-{n}"])[f"after-{n}"]["model"]["backend"]
    assert backend == "onnx"
