"""Live learning end to end: a real ``python -m ggvision_classifier`` process serving an embedding
variant on the IPC core, taught over ``local/learn`` by a real awsiotsdk client while another
asks on ``local/inference``; real photos; the classes persisted in its work directory."""

from __future__ import annotations

import base64
import contextlib
import io
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ggvision_classifier import learn_cli
from PIL import Image

from ggvision.serving.models.store import Model
from ggvision.testing import views as V
from ggvision.testing.agent import AgentProcess
from ggvision.testing.harness import CoreThread, pubsub_policy
from tests.classifier.test_service import NAME, _result, recipe_defaults
from tests.imprint.conftest import embedding_model

VARIANT = "tflite-int8-embedding"
TAUGHT = ("rocket", "camera", "coffee")
CATS = {"tiger cat", "Egyptian cat", "tabby"}


def png(img: np.ndarray) -> str:
    """An inline image (base64 JPEG, under the contract's 128 KiB for inline images)."""
    pil = Image.fromarray(img)
    while True:
        buf = io.BytesIO()
        pil.save(buf, "JPEG", quality=90)
        if buf.tell() <= 96 * 1024:
            return base64.b64encode(buf.getvalue()).decode()
        pil = pil.resize((pil.width * 3 // 4, pil.height * 3 // 4))


class Device:
    """A classifier process with a teacher (may publish on local/learn) and a requester."""

    def __init__(self, store: Path, work: Path, images: Path, overrides: dict[str, Any]) -> None:
        self.store, self.work, self.images = store, work, images
        self.core = CoreThread()
        self.core.__enter__()
        cfg = {
            **recipe_defaults(),
            "modelKey": VARIANT,
            "allowedDirectories": [str(images)],
            "queueSize": 200,
            **overrides,
        }
        env = self.core.component_env(NAME, configuration=cfg)
        env["GGV_MODEL_STORE"] = str(store)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ggvision_classifier"], env=env, cwd=work
        )
        deadline = time.monotonic() + 60
        while self.core.state_of(NAME) not in ("RUNNING", "ERRORED"):
            assert self.proc.poll() is None and time.monotonic() < deadline, "no start"
            time.sleep(0.05)
        assert self.core.state_of(NAME) == "RUNNING"
        self.teacher = AgentProcess(
            self.core.component_env(
                "com.test.Teacher",
                pubsub_policy(publish=["local/learn"], subscribe=["local/learn/reply"]),
            )
        )
        self.asker = AgentProcess(
            self.core.component_env(
                "com.test.Asker",
                pubsub_policy(
                    publish=["local/inference", "local/learn"], subscribe=["local/result"]
                ),
            )
        )
        self.replies = self.teacher("subscribe", topic="local/learn/reply")["sub"]
        self.results = self.asker("subscribe", topic="local/result")["sub"]

    def close(self) -> None:
        self.teacher.close()
        self.asker.close()
        self.proc.terminate()
        self.proc.wait(15)
        self.core.__exit__(None, None, None)

    def teach(self, msg: dict[str, Any]) -> None:
        self.teacher("publish", topic="local/learn", json=msg)

    def ask(self, rid: str, image: dict[str, Any]) -> None:
        self.asker("publish", topic="local/inference", json={"id": rid, "image": image})

    def collect(
        self, agent: AgentProcess, sub: int, ids: set[str], timeout: float = 120
    ) -> list[dict[str, Any]]:
        """Every message on ``sub`` until each of ``ids`` has been seen (AssertionError after
        ``timeout``); then what else is already there."""
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while not ids <= {m.get("id") for m in got}:
            assert time.monotonic() < deadline, f"missing {ids - {m.get('id') for m in got}}"
            events = agent("events", sub=sub, n=len(ids), timeout=1)["events"]
            got += [_result(e) for e in events]
        got += [_result(e) for e in agent("events", sub=sub, n=10**6, timeout=0.5)["events"]]
        return got

    def learn(self, msg: dict[str, Any]) -> dict[str, Any]:
        self.teach(msg)
        (reply,) = [
            r for r in self.collect(self.teacher, self.replies, {msg["id"]}) if r["id"] == msg["id"]
        ]
        return reply

    def classify(self, rid: str, img: np.ndarray) -> dict[str, Any]:
        self.ask(rid, {"data": png(img)})
        (result,) = [r for r in self.collect(self.asker, self.results, {rid}) if r["id"] == rid]
        return result


@contextlib.contextmanager
def work_and_images() -> Iterator[tuple[Path, Path]]:
    """A work directory and an image directory under /tmp (short socket paths), removed after."""
    work = Path(tempfile.mkdtemp(prefix="ggv-work-", dir="/tmp"))
    images = Path(tempfile.mkdtemp(prefix="ggv-img-", dir="/tmp"))
    try:
        yield work, images
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(images, ignore_errors=True)


@pytest.fixture(scope="module")
def dirs() -> Iterator[tuple[Path, Path]]:
    with work_and_images() as d:
        yield d


@pytest.fixture(scope="module")
def device(dirs: tuple[Path, Path]) -> Iterator[Device]:
    store = embedding_model(VARIANT).directory.parent
    work, images = dirs
    d = Device(store, work, images, {"learning": {**recipe_defaults()["learning"], "maxShots": 6}})
    yield d
    d.close()


@pytest.fixture(scope="module")
def shots() -> dict[str, list[np.ndarray]]:
    return V.object_views(6, 1)


@pytest.fixture(scope="module")
def held_out() -> dict[str, list[np.ndarray]]:
    return V.object_views(3, 2)


def test_teach_then_the_next_request_answers_with_the_class(
    device: Device, shots: dict[str, list[np.ndarray]], held_out: dict[str, list[np.ndarray]]
) -> None:
    assert device.learn({"id": "l0", "op": "list"})["classes"] == {}
    before = device.classify("before", held_out["rocket"][0])
    assert all(p["index"] < 1000 for p in before["predictions"])
    for label in TAUGHT:
        for i, img in enumerate(shots[label][:5]):
            if i == 0:  # one shot by path, as a request can name an image
                path = device.images / f"{label}.png"
                Image.fromarray(img).save(path)
                image: dict[str, Any] = {"path": str(path)}
            else:
                image = {"data": png(img)}
            reply = device.learn(
                {"id": f"{label}-{i}", "op": "add", "label": label, "image": image}
            )
            assert reply == {
                "id": f"{label}-{i}",
                "status": "ok",
                "op": "add",
                "label": label,
                "shots": i + 1,
            }
    listed = device.learn({"id": "l1", "op": "list"})
    assert listed["classes"] == {label: 5 for label in TAUGHT} and listed["mode"] == "extend"
    for label in TAUGHT:
        for j, img in enumerate(held_out[label]):
            result = device.classify(f"{label}-held-{j}", img)
            assert result["status"] == "ok"
            assert result["predictions"][0]["label"] == label, result
            assert result["predictions"][0]["index"] >= 1000
    cat = device.classify("cat", V.photo("chelsea"))
    assert cat["predictions"][0]["label"] in CATS  # extend: ImageNet answers stay


def test_bad_messages_each_get_one_structured_error(
    device: Device, shots: dict[str, list[np.ndarray]]
) -> None:
    counts = device.learn({"id": "c0", "op": "list"})["classes"]
    bad: dict[str, tuple[dict[str, Any] | bytes, str]] = {
        "b-op": ({"id": "b-op", "op": "teach"}, "INVALID_REQUEST"),
        "b-label": (
            {
                "id": "b-label",
                "op": "add",
                "label": "a/b",
                "image": {"data": png(shots["rocket"][5])},
            },
            "INVALID_LABEL",
        ),
        "b-long": (
            {
                "id": "b-long",
                "op": "add",
                "label": "x" * 65,
                "image": {"data": png(shots["rocket"][5])},
            },
            "INVALID_LABEL",
        ),
        "b-noimage": ({"id": "b-noimage", "op": "add", "label": "rocket"}, "INVALID_REQUEST"),
        "b-decode": (
            {
                "id": "b-decode",
                "op": "add",
                "label": "rocket",
                "image": {"data": base64.b64encode(b"not an image").decode()},
            },
            "IMAGE_DECODE_FAILED",
        ),
        "b-path": (
            {"id": "b-path", "op": "add", "label": "rocket", "image": {"path": "/etc/passwd"}},
            "PATH_NOT_ALLOWED",
        ),
        "b-missing": (
            {
                "id": "b-missing",
                "op": "add",
                "label": "rocket",
                "image": {"path": str(device.images / "nope.png")},
            },
            "IMAGE_NOT_FOUND",
        ),
        "b-remove": ({"id": "b-remove", "op": "remove", "label": "unicorn"}, "UNKNOWN_LABEL"),
        "b-reply": (
            {"id": "b-reply", "op": "list", "reply_topic": "local/elsewhere"},
            "INVALID_REQUEST",
        ),
        "b-json": (b'{"id": "b-json", "op": "add", ', "INVALID_REQUEST"),
    }
    for msg, _ in bad.values():
        if isinstance(msg, bytes):
            device.teacher("publish", topic="local/learn", binary=base64.b64encode(msg).decode())
        else:
            device.teach(msg)
    # the sixth shot of rocket is allowed (maxShots 6), the seventh is not
    device.teach(
        {"id": "s6", "op": "add", "label": "rocket", "image": {"data": png(shots["rocket"][5])}}
    )
    device.teach(
        {"id": "s7", "op": "add", "label": "rocket", "image": {"data": png(shots["rocket"][4])}}
    )
    device.teach({"id": "sentinel", "op": "list"})
    ids = set(bad) | {"s6", "s7", "sentinel"}
    replies = device.collect(device.teacher, device.replies, ids)
    by_id: dict[Any, list[dict[str, Any]]] = {}
    for r in replies:
        by_id.setdefault(r["id"], []).append(r)
    for rid, (_, code) in bad.items():
        (reply,) = by_id[rid]  # an undecodable message too: its id found in its bytes
        assert reply["status"] == "error" and reply["error"]["code"] == code, reply
        assert reply["error"]["message"]
    assert by_id["s6"][0]["shots"] == 6 and len(by_id["s6"]) == 1
    (s7,) = by_id["s7"]
    assert s7["error"]["code"] == "LIMIT_REACHED" and "maxShots" in s7["error"]["message"]
    # nothing refused touched a class
    assert by_id["sentinel"][0]["classes"] == {**counts, "rocket": 6}


def test_concurrent_teaching_and_classifying_loses_nothing(
    device: Device, shots: dict[str, list[np.ndarray]], held_out: dict[str, list[np.ndarray]]
) -> None:
    images = [png(img) for imgs in held_out.values() for img in imgs]
    teach = {
        f"t-{i}": png(img) for i, img in enumerate(shots["retina"][:5] + shots["astronaut"][:5])
    }
    asked: set[str] = set()
    for i in range(60):
        rid = f"load-{i}"
        device.ask(rid, {"data": images[i % len(images)]})
        asked.add(rid)
        if i % 6 == 0 and teach:
            tid, data = teach.popitem()
            label = "retina" if int(tid[2:]) < 5 else "astronaut"
            device.teach({"id": tid, "op": "add", "label": label, "image": {"data": data}})
    results = device.collect(device.asker, device.results, asked)
    seen = [r["id"] for r in results if r["id"] in asked]
    assert sorted(seen) == sorted(asked)  # every request answered, once
    assert all(r["status"] == "ok" for r in results), [r for r in results if r["status"] != "ok"]
    replies = device.collect(device.teacher, device.replies, {f"t-{i}" for i in range(10)})
    assert sorted(r["id"] for r in replies) == sorted(f"t-{i}" for i in range(10))
    assert all(r["status"] == "ok" for r in replies)


def test_remove_and_a_restart_keep_what_was_learned(
    device: Device, dirs: tuple[Path, Path], held_out: dict[str, list[np.ndarray]]
) -> None:
    assert device.learn({"id": "r0", "op": "remove", "label": "astronaut"})["removed"] == 5
    classes = device.learn({"id": "r1", "op": "list"})["classes"]
    assert set(classes) == {*TAUGHT, "retina"}
    work, images = dirs
    assert [p.name for p in (work / "learned").iterdir()] == ["classes.npz"]
    device.close()
    # a torn temp file from a crash mid-write is ignored (and cleaned up) at start
    (work / "learned" / ".classes.npz.4242.tmp").write_bytes(b"PK\x03\x04torn")
    again = Device(device.store, work, images, {})
    try:
        assert again.learn({"id": "r2", "op": "list"})["classes"] == classes
        result = again.classify("after-restart", held_out["coffee"][1])
        assert result["predictions"][0]["label"] == "coffee"
        assert not (work / "learned" / ".classes.npz.4242.tmp").exists()
        # export: the device's classes as a model-store variant
        out = work / "exported" / "device-classes"
        learn_cli.export(work, out, mode="replace", store=device.store)
        model = Model.load(out)
        assert model.manifest.task == "imprinted" and model.labels == list(classes)
        assert again.learn({"id": "r3", "op": "reset"})["removed"] == 4
        assert again.learn({"id": "r4", "op": "list"})["classes"] == {}
        plain = again.classify("after-reset", held_out["coffee"][1])
        assert all(p["index"] < 1000 for p in plain["predictions"])
    finally:
        again.close()
