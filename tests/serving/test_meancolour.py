"""A second task is one plug-in file plus its model: the toy task "mean_colour"
(``meancolour_task.py``) with a real TorchScript model that averages each channel, registered
from the test, served end to end through a real IPC core (the real ``awsiotsdk`` client on both
sides): a request on ``local/inference``, the task's answer on ``local/result``, checked against
numpy on the same image. Served once by the serving library's pieces alone (what a second model
component composes) and once by the ImageClassifier's composition root, unchanged."""

from __future__ import annotations

import base64
import io
import json
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from ggvision.bus import IpcBus
from ggvision.serving import (
    ImageLoader,
    ModelError,
    Worker,
    get_task,
    prepare_model,
    register_task,
    tasks,
)
from ggvision.testing.agent import AgentProcess
from ggvision.testing.harness import CoreThread, pubsub_policy
from tests.conftest import AgentFactory
from tests.serving.meancolour_task import NAME, MeanColourTask

KEY = "mean-colour"
SIDE = 16


@dataclass(frozen=True)
class Settings:
    """A model component's configuration as the serving library reads it (ModelSettings)."""

    model_key: str
    model_store_path: str
    model_store_layout: str = "ggvision"
    model_resource_key: Mapping[str, str] = field(default_factory=dict)
    backend: str = ""
    inference_threads: int = 1
    delegate: str = ""
    delegate_options: Mapping[str, str] = field(default_factory=dict)
    delegate_fallback: str = "error"

    def model_identity(self) -> tuple[Any, ...]:
        return (self.model_key, self.model_store_path, self.backend)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A model store with one variant: a TorchScript module that averages each channel."""
    torch = pytest.importorskip("torch")

    class MeanColour(torch.nn.Module):  # type: ignore[misc, name-defined, unused-ignore]
        def forward(self, x: Any) -> Any:
            return x.mean(dim=(2, 3))

    variant = tmp_path / "store" / KEY
    variant.mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is the format on purpose
        traced = torch.jit.trace(MeanColour(), torch.zeros(1, 3, SIDE, SIDE))
    traced.save(str(variant / "model.pt"))
    (variant / "labels.txt").write_text("r\ng\nb\n", encoding="utf-8")
    manifest = {
        "schema": 1,
        "name": "mean-colour",
        "version": "0.1.0",
        "variant": KEY,
        "format": "torchscript",
        "precision": "fp32",
        "file": "model.pt",
        "num_classes": 3,
        "task": NAME,
        "input": {"shape": [1, 3, SIDE, SIDE], "layout": "NCHW", "dtype": "float32"},
        "preprocess": {"resize": SIDE},
    }
    (variant / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return variant.parent


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """The toy task registered for this test only."""
    monkeypatch.setattr(tasks, "_registered", {})
    register_task(NAME, MeanColourTask)


def photo() -> tuple[str, np.ndarray]:
    """A random 16x16 RGB PNG (base64) and its pixels."""
    pixels = np.random.default_rng(7).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode(), pixels


def ask(requester: AgentProcess, request: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
    results = requester("subscribe", topic="local/result")["sub"]
    requester("publish", topic="local/inference", json=request)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in requester("events", sub=results, n=1, timeout=1)["events"]:
            msg = (
                event["json"] if "json" in event else json.loads(base64.b64decode(event["binary"]))
            )
            if msg.get("id") == request["id"]:
                return dict(msg)
    raise AssertionError(f"no result for {request['id']}")


def assert_mean_colour(result: dict[str, Any], pixels: np.ndarray) -> None:
    assert result["status"] == "ok", result
    assert result["predictions"] == []  # not a classification
    mean = result["output"]["mean_colour"]
    want = pixels.reshape(-1, 3).astype(np.float64).mean(axis=0)
    assert [mean["r"], mean["g"], mean["b"]] == pytest.approx(list(want), abs=1e-3)
    assert result["model"]["name"] == "mean-colour" and result["model"]["backend"] == "torch"


@pytest.fixture
def requester(agent: AgentFactory) -> AgentProcess:
    return agent(
        "com.test.Requester",
        pubsub_policy(publish=["local/inference"], subscribe=["local/result"]),
    )


def _bus(core: CoreThread, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> IpcBus:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return IpcBus()


@pytest.fixture
def library_worker(
    core: CoreThread, monkeypatch: pytest.MonkeyPatch, store: Path, registered: None
) -> Iterator[Worker]:
    """The serving library's pieces wired as a second model component would wire them."""
    env = core.component_env(
        "com.test.MeanColour",
        pubsub_policy(publish=["local/result"], subscribe=["local/inference"]),
    )
    bus = _bus(core, monkeypatch, env)
    worker = Worker(
        bus,
        result_topic="local/result",
        loader=ImageLoader([], max_bytes=1 << 20, max_pixels=1 << 20),
        queue_size=4,
        top_k=5,
        threshold=0.0,
        reply_topic_allowed=lambda topic: False,
        active=prepare_model(Settings(KEY, str(store)), events="meancolour"),
        role="meancolour",
    )
    worker.start()
    sub = bus.subscribe("local/inference", worker.on_message, inline=True)
    try:
        yield worker
    finally:
        sub.close()
        worker.stop()
        bus.close()


def test_the_library_serves_the_toy_task_through_ipc(
    library_worker: Worker, requester: AgentProcess
) -> None:
    image, pixels = photo()
    result = ask(requester, {"id": "mc-1", "image": {"data": image}})
    assert_mean_colour(result, pixels)
    assert library_worker.stats.ok == 1


def test_the_classifier_component_serves_the_toy_task_unchanged(
    core: CoreThread,
    monkeypatch: pytest.MonkeyPatch,
    store: Path,
    registered: None,
    requester: AgentProcess,
) -> None:
    from ggvision_classifier.app import NAME as CLASSIFIER
    from ggvision_classifier.app import ClassifierService

    from tests.classifier.test_service import recipe_defaults

    cfg = {**recipe_defaults(), "modelStorePath": str(store), "modelKey": KEY}
    bus = _bus(core, monkeypatch, core.component_env(CLASSIFIER, configuration=cfg))
    service = ClassifierService(bus)
    service.start()
    try:
        assert core.state_of(CLASSIFIER) == "RUNNING"
        image, pixels = photo()
        assert_mean_colour(ask(requester, {"id": "mc-2", "image": {"data": image}}), pixels)
    finally:
        service.stop()
        bus.close()


def test_a_model_of_an_unregistered_task_does_not_load(store: Path) -> None:
    with pytest.raises(ModelError) as info:
        prepare_model(Settings(KEY, str(store)))
    assert f"unknown task {NAME!r}" in str(info.value)
    assert "classification" in str(info.value)  # names the known ones


def test_a_model_whose_output_does_not_fit_its_task_is_refused(
    store: Path, registered: None
) -> None:
    """The warm-up output goes through the task's check: four outputs (the fake backend gives
    one per class) are no mean colour."""
    manifest_path = store / KEY / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["num_classes"] = 4
    manifest_path.write_text(json.dumps(manifest))
    (store / KEY / "labels.txt").write_text("r\ng\nb\na\n", encoding="utf-8")
    with pytest.raises(ModelError) as info:
        prepare_model(Settings(KEY, str(store), backend="fake"))
    assert "a mean colour model outputs 3 values, not 4" in str(info.value)
    assert get_task(NAME).name == NAME
