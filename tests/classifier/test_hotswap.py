"""Live model switching through deployments: a real classifier process on the IPC core, the real
IPC client as requester, real model files (a copy of the model store with a corrupt and a
wrong-shape variant beside the real ones) and real photos."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ggvision.core.deployments import DeployResult
from ggvision.testing.agent import AgentProcess
from ggvision.testing.harness import CoreThread, pubsub_policy
from tests.classifier.conftest import require_runtime
from tests.classifier.test_service import NAME, _result, start_classifier

STATUS = f"local/status/{NAME}"
TELEMETRY = "$local/greengrass/telemetry"


def add_corrupt(store: Path, into: Path) -> Path:
    """``into/corrupt``: tflite-int8's manifest without its checksum over garbage model bytes,
    so only loading it finds out."""
    corrupt = into / "corrupt"
    shutil.copytree(store / "tflite-int8", corrupt)
    manifest = json.loads((corrupt / "manifest.json").read_text())
    manifest.pop("sha256", None)
    (corrupt / "manifest.json").write_text(json.dumps(manifest))
    (corrupt / manifest["file"]).write_bytes(b"TFL3 this is not a flatbuffer" * 1000)
    return corrupt


def make_store(store: Path, into: Path) -> Path:
    """A model store with tflite-int8 and onnx-int8 copied from the real one, plus ``corrupt``
    (garbage model bytes, no checksum, so only loading it finds out) and ``wrong-shape`` (a
    manifest that promises 10 classes of a 1000-class model)."""
    for variant in ("tflite-int8", "onnx-int8"):
        if not (store / variant / "manifest.json").is_file():
            pytest.skip(f"variant {variant} is not in the model store")
        shutil.copytree(store / variant, into / variant)
    add_corrupt(store, into)
    wrong = into / "wrong-shape"
    shutil.copytree(store / "tflite-int8", wrong)
    manifest = json.loads((wrong / "manifest.json").read_text())
    manifest["num_classes"] = 10
    (wrong / "manifest.json").write_text(json.dumps(manifest))
    labels = (wrong / manifest.get("labels", "labels.txt")).read_text().splitlines()[:10]
    (wrong / manifest.get("labels", "labels.txt")).write_text("\n".join(labels) + "\n")
    return into


class Swapping:
    def __init__(self, core: CoreThread, proc: subprocess.Popen[bytes], images: Path) -> None:
        self.core, self.proc, self.images = core, proc, images
        self.requester = AgentProcess(
            core.component_env(
                "com.test.Requester",
                pubsub_policy(
                    publish=["local/inference"],
                    subscribe=["local/result", STATUS, TELEMETRY],
                ),
            )
        )
        self.results = self.requester("subscribe", topic="local/result")["sub"]
        self.statuses = self.requester("subscribe", topic=STATUS)["sub"]
        self.telemetry = self.requester("subscribe", topic=TELEMETRY)["sub"]
        self.seen: dict[str, dict[str, Any]] = {}
        self.duplicates: list[str] = []

    def send(self, rid: str, photo: str = "chelsea.jpg") -> None:
        request = {"id": rid, "image": {"path": str(self.images / photo)}}
        self.requester("publish", topic="local/inference", json=request)

    def collect(self, ids: list[str], timeout: float = 120) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while not set(ids) <= set(self.seen) and time.monotonic() < deadline:
            for e in self.requester("events", sub=self.results, n=50, timeout=1)["events"]:
                r = _result(e)
                if r["id"] in self.seen:
                    self.duplicates.append(r["id"])
                self.seen[r["id"]] = r
        return {i: self.seen[i] for i in ids if i in self.seen}

    def ask(self, rid: str) -> dict[str, Any]:
        self.send(rid)
        got = self.collect([rid], timeout=30)
        assert rid in got, f"no answer to {rid}"
        return got[rid]

    def status(self, where: Any = None, timeout: float = 10) -> dict[str, Any]:
        """The next status report (that satisfies ``where``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.requester("events", sub=self.statuses, n=1, timeout=1)["events"]:
                report: dict[str, Any] = _result(e)
                if where is None or where(report):
                    return report
        raise AssertionError("no matching status report")

    def model_key(self) -> str:
        return str(self.core.get_config(NAME)["modelKey"])

    def deploy(self, merge: dict[str, Any]) -> DeployResult:
        return self.core.deploy({NAME: {"MERGE": merge}})


@pytest.fixture(scope="module")
def swapping(store: Path, photo_files: dict[str, Path]) -> Iterator[Swapping]:
    require_runtime("ai_edge_litert")
    require_runtime("onnxruntime")
    tmp = Path(tempfile.mkdtemp(prefix="ggv-swap-", dir="/tmp"))
    images = tmp / "images"
    images.mkdir()
    for path in photo_files.values():
        shutil.copy(path, images / path.name)
    (tmp / "store").mkdir()
    test_store = make_store(store, tmp / "store")
    with CoreThread(validation_timeout_s=30.0) as core:
        proc = start_classifier(
            core,
            test_store,
            {
                "allowedDirectories": [str(images)],
                "modelKey": "tflite-int8",
                "queueSize": 1000,
                "threads": 1,
                "statusIntervalSeconds": 0.3,
            },
        )
        s = Swapping(core, proc, images)
        try:
            yield s
        finally:
            s.requester.close()
            proc.terminate()
            proc.wait(15)
    shutil.rmtree(tmp, ignore_errors=True)


def test_swap_under_continuous_load_fails_and_loses_nothing(swapping: Swapping) -> None:
    s = swapping
    start_key = s.model_key()
    target = "onnx-int8" if start_key != "onnx-int8" else "tflite-int8"
    deployed: list[DeployResult] = []
    deployer = threading.Thread(target=lambda: deployed.append(s.deploy({"modelKey": target})))
    ids: list[str] = []
    after = 0
    photos = ["chelsea.jpg", "coffee.jpg", "rocket.jpg"]
    while after < 30:
        rid = f"load-{len(ids)}"
        s.send(rid, photos[len(ids) % 3])
        ids.append(rid)
        if len(ids) == 20:
            deployer.start()
        if len(ids) > 20 and not deployer.is_alive():
            after += 1
        time.sleep(0.01)
    deployer.join(60)
    got = s.collect(ids)
    assert deployed and deployed[0].status == "SUCCEEDED", deployed
    assert set(got) == set(ids), f"lost: {sorted(set(ids) - set(got))[:5]}"
    assert s.duplicates == []
    failed = {i: r["error"] for i, r in got.items() if r["status"] != "ok"}
    assert failed == {}
    backends = [got[i]["model"]["backend"] for i in ids]  # in the order they were sent
    old, new = ("tflite", "onnx") if target == "onnx-int8" else ("onnx", "tflite")
    switch = backends.index(new)
    assert backends[:switch] == [old] * switch and backends[switch:] == [new] * (len(ids) - switch)
    assert backends[0] == old and backends[-1] == new
    # Same photo, same top label, before and after.
    labels = {got[i]["predictions"][0]["label"] for n, i in enumerate(ids) if n % 3 == 0}
    assert labels & {"tabby", "tiger cat", "Egyptian cat"}
    report = s.status(lambda r: r["model"] and r["model"]["backend"] == new)
    assert report["last_swap"]["ok"] is True and report["last_swap"]["model_key"] == target
    assert s.core.state_of(NAME) == "RUNNING"


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("corrupt", "cannot load"),
        ("wrong-shape", "outputs 1000 scores for 10"),
        ("not-there", "no model at"),
        ("../tflite-int8", "bad model key"),
    ],
)
def test_a_bad_model_is_rejected_with_the_reason_and_the_old_keeps_serving(
    swapping: Swapping, key: str, reason: str
) -> None:
    s = swapping
    before = s.model_key()
    result = s.deploy({"modelKey": key})
    assert result.status == "FAILED"
    assert reason in result.message and NAME in result.message, result.message
    assert s.model_key() == before
    answer = s.ask(f"after-{key}")
    assert answer["status"] == "ok"
    assert answer["predictions"][0]["label"] in {"tabby", "tiger cat", "Egyptian cat"}


def test_an_invalid_configuration_is_rejected_with_the_key(swapping: Swapping) -> None:
    result = swapping.deploy({"topK": 0})
    assert result.status == "FAILED" and "topK" in result.message


def test_a_model_that_fails_after_validation_never_replaces_the_running_one(
    swapping: Swapping,
) -> None:
    """A configuration applied without a validity report (the Nucleus proceeds when a component
    does not answer in time) with a corrupt model: logged, in the status, old model serving."""
    s = swapping
    before = s.ask("before-unvalidated")["model"]
    current = s.core.get_config(NAME)
    s.core.call(
        lambda: s.core.ipc.update_component_configuration(NAME, {**current, "modelKey": "corrupt"})
    )
    report = s.status(lambda r: r.get("model_error") and "corrupt" in r["model_error"])
    assert report["last_swap"]["ok"] is False
    assert report["model"] == before and report["state"] == "RUNNING"
    assert s.ask("after-unvalidated")["model"] == before
    assert s.core.state_of(NAME) == "RUNNING"
    # A good model afterwards swaps in and clears the error.
    back = "onnx-int8" if before["backend"] == "tflite" else "tflite-int8"
    assert s.deploy({"modelKey": back}).status == "SUCCEEDED"
    cleared = s.status(lambda r: r["model_error"] is None and r["model"] != before)
    assert cleared["model_key"] == back


def test_status_and_telemetry_reports(swapping: Swapping) -> None:
    s = swapping
    for i in range(5):
        s.ask(f"tele-{i}")
    report = s.status(lambda r: r["ok"] >= 5)
    assert report["component"] == NAME and report["type"] == "status"
    assert (
        report["latency_ms"]["p50"] > 0
        and report["latency_ms"]["p95"] >= report["latency_ms"]["p50"]
    )
    assert report["queue_depth"] >= 0 and report["dropped"] >= 0 and report["uptime_s"] > 0
    assert report["model"]["name"] == "efficientnet-lite0"
    # The reports buffered since the module started; a recent one has latencies.
    names: set[str] = set()
    deadline = time.monotonic() + 10
    while f"{NAME}.LatencyP95" not in names and time.monotonic() < deadline:
        for e in s.requester("events", sub=s.telemetry, n=1, timeout=1)["events"]:
            metrics = json.loads(base64.b64decode(e["binary"]))
            assert all(set(m) == {"NS", "N", "U", "A", "V", "TS"} for m in metrics)
            names = {m["N"] for m in metrics}
    assert {f"{NAME}.Fps", f"{NAME}.QueueDepth", f"{NAME}.LatencyP95"} <= names


def test_without_a_model_the_state_is_errored_until_a_deployment_brings_one(
    store: Path, tmp_path: Path
) -> None:
    require_runtime("ai_edge_litert")
    (tmp_path / "store").mkdir()
    test_store = make_store(store, tmp_path / "store")
    with CoreThread(validation_timeout_s=30.0) as core:
        proc = start_classifier(core, test_store, {"modelKey": "corrupt", "threads": 1})
        try:
            assert core.state_of(NAME) == "ERRORED"
            result = core.deploy({NAME: {"MERGE": {"modelKey": "tflite-int8"}}})
            assert result.status == "SUCCEEDED", result.message
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and core.state_of(NAME) != "RUNNING":
                time.sleep(0.05)
            assert core.state_of(NAME) == "RUNNING"
        finally:
            proc.terminate()
            proc.wait(15)
