"""The embedding variants added after the first five (torchscript int8, DLR) taught and asked
through the real classifier process on the IPC core (real awsiotsdk clients, real photos), and
the status report's ``learning`` counts against the ``list`` op and ``ggvision learn list``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ggvision_classifier import learn_cli

from ggvision.serving.models.store import DEFAULT_BACKEND
from ggvision.testing import views as V
from ggvision.testing.agent import AgentProcess
from ggvision.testing.harness import pubsub_policy
from tests.classifier.test_service import NAME, _result, recipe_defaults
from tests.imprint.conftest import NEW_VARIANTS, embedding_model
from tests.imprint.test_live import CATS, TAUGHT, Device, png, work_and_images

STATUS = f"local/status/{NAME}"
TELEMETRY = "$local/greengrass/telemetry"
SHOTS = 5


@pytest.fixture
def dirs() -> Iterator[tuple[Path, Path]]:
    with work_and_images() as d:
        yield d


@pytest.fixture(scope="module")
def shots() -> dict[str, list[np.ndarray]]:
    return V.object_views(SHOTS, 1)


@pytest.fixture(scope="module")
def held_out() -> dict[str, list[np.ndarray]]:
    return V.object_views(2, 2)


def latest(agent: AgentProcess, sub: int, want: Any, timeout: float = 60) -> Any:
    """The first message on ``sub`` for which ``want(message)`` holds (AssertionError after
    ``timeout``)."""
    deadline = time.monotonic() + timeout
    seen: list[Any] = []
    while time.monotonic() < deadline:
        for event in agent("events", sub=sub, n=100, timeout=0.5)["events"]:
            message = _result(event)
            seen.append(message)
            if want(message):
                return message
    raise AssertionError(f"no matching message in {len(seen)}: {seen[-1:]}")


@pytest.mark.parametrize("variant", NEW_VARIANTS)
def test_new_variant_learns_live_and_status_counts_agree(
    variant: str,
    dirs: tuple[Path, Path],
    shots: dict[str, list[np.ndarray]],
    held_out: dict[str, list[np.ndarray]],
) -> None:
    model = embedding_model(variant)
    store = model.directory.parent
    work, images = dirs
    learning = {**recipe_defaults()["learning"], "maxShots": 7, "maxClasses": 9}
    device = Device(
        store,
        work,
        images,
        {"modelKey": variant, "statusIntervalSeconds": 0.3, "learning": learning},
    )
    watcher = AgentProcess(
        device.core.component_env("com.test.Watcher", pubsub_policy(subscribe=[STATUS, TELEMETRY]))
    )
    try:
        statuses = watcher("subscribe", topic=STATUS)["sub"]
        telemetry = watcher("subscribe", topic=TELEMETRY)["sub"]
        empty = latest(watcher, statuses, lambda m: "learning" in m)["learning"]
        assert (empty["classes"], empty["shots"], empty["variant"]) == (0, 0, variant)
        for label in TAUGHT:
            for i, img in enumerate(shots[label]):
                msg = {"id": f"{label}-{i}", "op": "add", "label": label}
                reply = device.learn({**msg, "image": {"data": png(img)}})
                assert (reply["status"], reply.get("shots")) == ("ok", i + 1), reply
        for label in TAUGHT:
            for j, img in enumerate(held_out[label]):
                result = device.classify(f"{label}-held-{j}", img)
                assert result["predictions"][0]["label"] == label, result
                assert result["predictions"][0]["index"] >= 1000
        cat = device.classify("cat", V.photo("chelsea"))
        assert cat["predictions"][0]["label"] in CATS  # extend: ImageNet answers stay
        assert result["model"]["backend"] == DEFAULT_BACKEND[model.manifest.format]

        total = SHOTS * len(TAUGHT)
        listed = device.learn({"id": "list", "op": "list"})
        assert listed["classes"] == {label: SHOTS for label in TAUGHT}
        status = latest(watcher, statuses, lambda m: m.get("learning", {}).get("shots") == total)
        assert status["learning"] == {
            "enabled": True,
            "classes": len(TAUGHT),
            "shots": total,
            "mode": "extend",
            "variant": variant,
            "limits": {
                "max_shots": 7,
                "max_classes": 9,
                "max_label_length": learning["maxLabelLength"],
                "queue_size": learning["queueSize"],
            },
            "queued": 0,
        }
        # the list op and `ggvision learn list` count as the status does
        assert (listed["mode"], listed["shots"], listed["variant"]) == ("extend", total, variant)
        assert listed["limits"] == status["learning"]["limits"]
        assert learn_cli.listing(work) == {
            "classes": len(TAUGHT),
            "shots": total,
            "variant": variant,
            "per_class": listed["classes"],
        }
        figures = latest(
            watcher,
            telemetry,
            lambda m: any(f["N"] == f"{NAME}.LearnedShots" and f["V"] == total for f in m),
        )
        named = {f["N"]: f["V"] for f in figures}
        assert named[f"{NAME}.LearnedClasses"] == len(TAUGHT)
    finally:
        watcher.close()
        device.close()
