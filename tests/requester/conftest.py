"""Fixtures for the requester's tests: the real ``python -m ggvision_requester`` process on an IPC
core, answered by the real classifier (model tests) or by a misbehaving fake one, plus a listener
on the status topic for the summary.

The real classifier needs the model store: without it the tests that need it skip, unless
``GGV_REQUIRE_MODELS=1`` (see ``tests/classifier/conftest.py``, whose fixtures are reused here).
"""

from __future__ import annotations

import base64
import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from ggvision.testing.agent import AgentProcess
from ggvision.testing.harness import CoreThread, pubsub_policy
from tests.classifier.conftest import (  # noqa: F401 - photo_files and store are fixtures
    REPO,
    photo_files,
    store,
    variant_model,
)

RECIPE = REPO / "components" / "com.custom.requester" / "recipe.yaml"
NAME = "com.custom.requester"
STATUS_TOPIC = "local/status/com.custom.requester"
FAKE = "com.test.FakeClassifier"


def recipe_defaults() -> dict[str, Any]:
    recipe = yaml.safe_load(RECIPE.read_text(encoding="utf-8"))
    cfg: dict[str, Any] = recipe["ComponentConfiguration"]["DefaultConfiguration"]
    return cfg


@dataclass
class Run:
    """A finished requester process and what it left behind."""

    rc: int
    stdout: str
    stderr: str
    elapsed_s: float
    jsonl: list[dict[str, Any]] = field(default_factory=list)
    csv: list[dict[str, str]] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        """The run's id: the prefix of every request id it generated."""
        [run_id] = {str(r["id"]).rsplit("-", 1)[0] for r in self.jsonl}
        return run_id

    def log(self) -> list[dict[str, Any]]:
        """The component's JSON log lines (stdout)."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]

    def by_image(self) -> dict[str, dict[str, Any]]:
        return {Path(r["image"]).name: r for r in self.jsonl}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


class Bench:
    """A core with a classifier (real or fake) and a status listener; runs requesters on it."""

    def __init__(self, core: CoreThread, out: Path) -> None:
        self.core = core
        self.out = out
        self.listener = AgentProcess(
            core.component_env("com.test.Status", pubsub_policy(subscribe=[STATUS_TOPIC]))
        )
        self.status_sub = self.listener("subscribe", topic=STATUS_TOPIC)["sub"]
        self.runs = 0

    def env(self, overrides: dict[str, Any]) -> dict[str, str]:
        """Register the requester with its recipe's defaults plus ``overrides``."""
        return self.core.component_env(NAME, configuration={**recipe_defaults(), **overrides})

    def start(
        self, overrides: dict[str, Any], args: list[str] | None = None
    ) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "ggvision_requester", *(args or [])],
            env=self.env(overrides),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(
        self, overrides: dict[str, Any], args: list[str] | None = None, timeout: float = 30
    ) -> Run:
        """Run a requester to its end; outputs go to fresh files unless ``overrides`` name them."""
        self.runs += 1
        jsonl = self.out / f"run{self.runs}.jsonl"
        table = self.out / f"run{self.runs}.csv"
        overrides = {"outputJsonl": str(jsonl), "outputCsv": str(table), **overrides}
        self.summaries(n=0, timeout=0)  # forget earlier runs' summaries
        started = time.monotonic()
        proc = self.start(overrides, args)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
            raise AssertionError(f"requester still running after {timeout} s:\n{stderr}") from None
        return Run(
            proc.returncode,
            stdout,
            stderr,
            time.monotonic() - started,
            read_jsonl(Path(overrides["outputJsonl"] or jsonl)),
            read_csv(Path(overrides["outputCsv"] or table)),
        )

    def summary(self, run: Run) -> dict[str, Any]:
        """The one summary ``run`` published on the status topic."""
        [summary] = self.summaries()
        assert summary["run_id"] == run.run_id
        return summary

    def summaries(self, n: int = 1, timeout: float = 5) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            wait = max(0.0, deadline - time.monotonic())
            events = self.listener("events", sub=self.status_sub, n=n, timeout=wait)["events"]
            messages = [
                e["json"] if "json" in e else json.loads(base64.b64decode(e["binary"]))
                for e in events
            ]
            # Periodic status reports share the topic with the summary.
            out += [m for m in messages if m.get("type") != "status"]
            if len(out) >= n or time.monotonic() >= deadline:
                return out

    def close(self) -> None:
        self.listener.close()


def wait_running(core: CoreThread, name: str, proc: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if core.state_of(name) in ("RUNNING", "ERRORED"):
            return
        assert proc.poll() is None, f"{name} exited during start-up"
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"{name} did not report its state")


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Fake:
    bench: Bench
    log: Path

    def received(self) -> dict[str, list[float]]:
        """id -> monotonic arrival time of each attempt the fake classifier saw."""
        out: dict[str, list[float]] = {}
        for r in read_jsonl(self.log):
            out.setdefault(r["id"], []).append(r["t"])
        return out


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """Three small images (the fake classifier never opens them)."""
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for n, colour in enumerate(("red", "green", "blue")):
        Image.new("RGB", (64, 48), colour).save(folder / f"img{n}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[Callable[[str], Fake]]:
    """``fake(mode)``: a core with a fake classifier in ``mode`` (see fake_classifier.py)."""
    started: list[tuple[CoreThread, subprocess.Popen[bytes], Bench]] = []

    def make(mode: str) -> Fake:
        core = CoreThread(validation_timeout_s=5.0)
        core.start()
        log = tmp_path / f"fake-{mode}.jsonl"
        env = core.component_env(
            FAKE, pubsub_policy(publish=["local/result"], subscribe=["local/inference"])
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.requester.fake_classifier", mode, "--log", str(log)],
            env=env,
            cwd=REPO,
        )
        bench = Bench(core, tmp_path)
        started.append((core, proc, bench))
        wait_running(core, FAKE, proc)
        return Fake(bench, log)

    yield make
    for core, proc, bench in started:
        bench.close()
        stop(proc)
        core.stop()


@dataclass
class Classified:
    """A core with the real classifier, the photos in a folder it may read, and a bench."""

    bench: Bench
    images: Path


@pytest.fixture(scope="module")
def classified(store: Path, photo_files: dict[str, Path]) -> Iterator[Classified]:  # noqa: F811
    from tests.classifier.test_service import start_classifier

    variant_model(store, "tflite-int8")  # skips (or fails under GGV_REQUIRE_MODELS=1) without it

    images = Path(tempfile.mkdtemp(prefix="ggv-req-", dir="/tmp"))
    out = Path(tempfile.mkdtemp(prefix="ggv-req-out-", dir="/tmp"))
    for path in photo_files.values():
        shutil.copy(path, images / path.name)
    with CoreThread() as core:
        proc = start_classifier(
            core, store, {"allowedDirectories": [str(images)], "modelKey": "tflite-int8"}
        )
        bench = Bench(core, out)
        try:
            yield Classified(bench, images)
        finally:
            bench.close()
            stop(proc)
    shutil.rmtree(images, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
