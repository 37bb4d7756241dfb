"""Load: bursts from 4 concurrent requester processes (the real client) against the classifier.
Every request is answered exactly once, ok or ``OVERLOADED``; none is lost. The classifier's
peak RSS and the latency percentiles are printed (speed itself belongs to bench/)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from ggvision.stats import percentile
from ggvision.testing.harness import pubsub_policy

from .conftest import REPO, Running, default_store, fake_store, serve

REQUESTERS = 4
RSS_LIMIT_MB = 512  # measured: about 100-130 MB; a leak over 10k requests would not fit


def acl_with_reply_topics() -> dict[str, Any]:
    """The recipe's accessControl, plus publishing to per-requester reply topics."""
    return pubsub_policy(publish=["local/result", "local/result/*"], subscribe=["local/inference"])


def small_jpeg(path: Path) -> str:
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(path, quality=85)
    return str(path)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


def burst(running: Running, total: int, timeout_s: float) -> list[dict[str, Any]]:
    path = small_jpeg(running.images / "burst.jpg")
    procs = []
    for n in range(REQUESTERS):
        topic = f"local/result/{n}"
        env = running.core.component_env(
            f"com.test.Burst{n}", pubsub_policy(publish=["local/inference"], subscribe=[topic])
        )
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.reliability.burst_client",
                    f"r{n}",
                    str(total // REQUESTERS),
                    path,
                    topic,
                    str(timeout_s),
                ],
                env=env,
                cwd=REPO,
                stdout=subprocess.PIPE,
            )
        )
    outs = []
    for p in procs:
        stdout, _ = p.communicate(timeout=timeout_s + 60)
        assert p.returncode == 0
        outs.append(json.loads(stdout.decode().strip().splitlines()[-1]))
    return outs


def check_and_report(label: str, outs: list[dict[str, Any]], total: int, pid: int) -> None:
    codes: dict[str, int] = {}
    latencies: list[float] = []
    for out in outs:
        assert out["publish_errors"] == 0, out["prefix"]
        assert out["duplicates"] == [], f"{out['prefix']}: answered twice: {out['duplicates'][:5]}"
        assert out["missing"] == [], f"{out['prefix']}: never answered: {out['missing']}"
        assert out["answered"] == out["sent"]
        assert out["foreign"] == 0, "a reply reached the wrong requester"
        for code, n in out["codes"].items():
            codes[code] = codes.get(code, 0) + n
        latencies += out["latency_ms"]
    assert sum(codes.values()) == total
    assert set(codes) <= {"ok", "OVERLOADED"}, codes
    assert codes.get("ok", 0) > 0, codes
    rss = peak_rss_mb(pid)
    elapsed = max(o["elapsed_s"] for o in outs)
    figures = {
        "requests": total,
        "requesters": REQUESTERS,
        "seconds": round(elapsed, 2),
        "codes": codes,
        "latency_ms": {f"p{q}": round(percentile(latencies, q), 2) for q in (50, 95, 99)},
        "classifier_peak_rss_mb": round(rss, 1),
    }
    line = f"[load] {label}: {json.dumps(figures)}"
    print("\n" + line)  # shown with -s; kept in build/reliability/load.txt as well
    report = REPO / "build" / "reliability" / "load.txt"
    report.parent.mkdir(parents=True, exist_ok=True)
    with report.open("a", encoding="utf-8") as f:
        f.write(line + "\n")
    assert rss < RSS_LIMIT_MB


@pytest.fixture(scope="module")
def fake_classifier() -> Iterator[Running]:
    with tempfile.TemporaryDirectory(prefix="ggv-store-") as tmp:
        store = fake_store(Path(tmp))
        yield from serve(
            store,
            {"modelKey": "fake", "backend": "fake", "accessControl": acl_with_reply_topics()},
        )


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_ten_thousand_requests_each_answered_once_fake_backend(fake_classifier: Running) -> None:
    total = 10_000
    outs = burst(fake_classifier, total, timeout_s=180)
    check_and_report("fake backend", outs, total, fake_classifier.proc.pid)
    assert fake_classifier.proc.poll() is None


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_thousand_requests_each_answered_once_default_model() -> None:
    store = default_store()
    total = 1_000
    for running in serve(store, {"accessControl": acl_with_reply_topics()}):
        outs = burst(running, total, timeout_s=180)
        check_and_report("default model (tflite-int8)", outs, total, running.proc.pid)
        assert running.proc.poll() is None
