"""A deployment never cuts a classifier's requests off: the real classifier process defers the
component update (DeferComponentUpdate, recheckAfterMs) while requests are in flight and lets it
through once idle; real model files, real photos, the real client as requester."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ggvision.core.deployments import DeployResult, UpdatePolicy
from ggvision.testing.agent import AgentProcess
from ggvision.testing.harness import CoreThread, pubsub_policy
from tests.classifier.conftest import require_runtime
from tests.classifier.test_service import NAME, _result, recipe_defaults

BURST = 60


class Classifier:
    def __init__(self, core: CoreThread, proc: subprocess.Popen[bytes], log: Path, images: Path):
        self.core, self.proc, self.log, self.images = core, proc, log, images

    def events(self) -> list[str]:
        """The ``event`` keys of its log so far (one JSON object per line on stdout)."""
        keys = []
        for line in self.log.read_text().splitlines():
            try:
                keys.append(str(json.loads(line).get("event")))
            except ValueError:
                continue
        return keys


@pytest.fixture
def classifier(store: Path, photo_files: dict[str, Path]) -> Iterator[Classifier]:
    require_runtime("ai_edge_litert")
    tmp = Path(tempfile.mkdtemp(prefix="ggv-upd-", dir="/tmp"))
    images = tmp / "images"
    images.mkdir()
    shutil.copy(photo_files["chelsea"], images / "chelsea.jpg")
    cfg = {
        **recipe_defaults(),
        "modelKey": "tflite-int8",
        "allowedDirectories": [str(images)],
        "frameDirectory": str(tmp),
        "queueSize": 4 * BURST,
        "topK": 5,
    }
    try:
        with CoreThread() as core:
            env = core.component_env(NAME, configuration=cfg)
            env["GGV_MODEL_STORE"] = str(store)
            log = tmp / "classifier.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "ggvision_classifier"], env=env, stdout=out
                )
            try:
                deadline = time.monotonic() + 60
                while core.state_of(NAME) != "RUNNING":
                    assert proc.poll() is None, "classifier exited during start-up"
                    assert time.monotonic() < deadline, "classifier did not report RUNNING"
                    time.sleep(0.05)
                yield Classifier(core, proc, log, images)
            finally:
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGCONT)
                    proc.terminate()
                    proc.wait(15)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def collect(
    requester: AgentProcess, sub: int, ids: set[str], timeout: float = 120
) -> list[dict[str, Any]]:
    """Every result received until all of ``ids`` are answered (or ``timeout``)."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not ids <= {r["id"] for r in got} and time.monotonic() < deadline:
        got += [_result(e) for e in requester("events", sub=sub, n=BURST, timeout=1)["events"]]
    return got


def test_a_deployment_waits_for_the_requests_in_flight(classifier: Classifier) -> None:
    core = classifier.core
    requester = AgentProcess(
        core.component_env(
            "com.test.Requester",
            pubsub_policy(publish=["local/inference"], subscribe=["local/result"]),
        )
    )
    observer = AgentProcess(core.component_env("com.test.Observer"))
    try:
        results = requester("subscribe", topic="local/result")["sub"]
        updates = observer("subscribe_updates")["sub"]  # answers 0: it never defers
        # The classifier is stopped while the burst and the PreComponentUpdateEvent reach its
        # socket, so that it reads the event with the whole burst in flight, on any machine.
        os.kill(classifier.proc.pid, signal.SIGSTOP)
        ids = {f"upd-{i}" for i in range(BURST)}
        for rid in sorted(ids):
            request = {"id": rid, "image": {"path": str(classifier.images / "chelsea.jpg")}}
            requester("publish", topic="local/inference", json=request)
        done: list[DeployResult] = []
        deploying = threading.Thread(
            target=lambda: done.append(
                core.deploy({NAME: {"MERGE": {"topK": 3}}}, UpdatePolicy(timeout_s=30), 120)
            )
        )
        deploying.start()
        first = observer("events", sub=updates, n=1, timeout=30)["events"]
        assert "pre" in first[0]  # the event is on the classifier's socket too, behind the burst
        os.kill(classifier.proc.pid, signal.SIGCONT)

        answered = collect(requester, results, ids)
        deploying.join(120)
        assert done and done[0].status == "SUCCEEDED"
        deployment_id = done[0].deployment_id

        # No request lost or cut off: every accepted id answered once, ok, with the old topK
        # (the update was applied only after the last of them).
        assert sorted(r["id"] for r in answered) == sorted(ids)
        assert {r["status"] for r in answered} == {"ok"}
        assert {len(r["predictions"]) for r in answered} == {5}

        seen = first + observer("events", sub=updates, n=10, timeout=5)["events"]
        rounds = [e["pre"] for e in seen if "pre" in e]
        assert len(rounds) >= 2  # the classifier deferred, so the core asked again
        assert {p["deploymentId"] for p in rounds} == {deployment_id}
        assert [e["post"] for e in seen if "post" in e] == [{"deploymentId": deployment_id}]

        # The update is applied afterwards: a new request gets the new topK.
        deadline = time.monotonic() + 30
        top_k = 0
        n = 0
        while top_k != 3 and time.monotonic() < deadline:
            n += 1
            rid = f"after-{n}"
            request = {"id": rid, "image": {"path": str(classifier.images / "chelsea.jpg")}}
            requester("publish", topic="local/inference", json=request)
            (result,) = [r for r in collect(requester, results, {rid}, 20) if r["id"] == rid]
            top_k = len(result["predictions"])
        assert top_k == 3

        events = classifier.events()
        assert "classifier.update_deferred" in events
        assert events.index("classifier.update_deferred") < events.index("classifier.update_ready")
        assert "classifier.update_applied" in events  # it saw PostComponentUpdateEvent
    finally:
        requester.close()
        observer.close()
