"""Timeouts, retries, back-off, duplicates and stopping: the real requester process against a
fake classifier that misbehaves on purpose (``fake_classifier.py``), on a real IPC core."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

from tests.requester.conftest import Fake, read_jsonl, stop

FakeFactory = Callable[[str], Fake]


def test_a_request_whose_first_attempt_is_ignored_is_retried_with_the_same_id(
    fake: FakeFactory, images: Path
) -> None:
    flaky = fake("flaky")
    run = flaky.bench.run(
        {"imageDirectory": str(images), "timeoutS": 0.5, "retries": 2, "backoffS": 0.1}
    )
    assert run.rc == 0, run.stderr
    assert sorted(r["image"] for r in run.jsonl) == sorted(str(p) for p in images.glob("*.png"))
    assert all(r["status"] == "ok" and r["attempts"] == 2 for r in run.jsonl)
    assert all(r["latency_ms"] >= 500 for r in run.jsonl)  # the ignored attempt's timeout
    received = flaky.received()
    assert set(received) == {r["id"] for r in run.jsonl}  # both attempts carried the same id
    assert all(len(times) == 2 for times in received.values())
    summary = flaky.bench.summary(run)
    assert (summary["count"], summary["ok"], summary["retries"], summary["timeouts"]) == (
        3,
        3,
        3,
        0,
    )


def test_requests_never_answered_time_out_after_bounded_retries_and_exit_non_zero(
    fake: FakeFactory, images: Path
) -> None:
    silent = fake("silent")
    run = silent.bench.run(
        {
            "imageDirectory": str(images),
            "timeoutS": 0.3,
            "retries": 1,
            "backoffS": 0.1,
            "maxInFlight": 2,
        }
    )
    assert run.rc == 1
    assert run.elapsed_s < 10  # nothing hangs
    assert [r["status"] for r in run.jsonl] == ["timeout"] * 3
    assert all(r["attempts"] == 2 and r["error"]["code"] == "TIMEOUT" for r in run.jsonl)
    assert all(r["latency_ms"] is None for r in run.jsonl)
    assert all(len(times) == 2 for times in silent.received().values())
    assert {r["status"] for r in run.csv} == {"timeout"}
    summary = silent.bench.summary(run)
    assert (summary["count"], summary["ok"], summary["timeouts"], summary["retries"]) == (
        3,
        0,
        3,
        3,
    )
    assert summary["latency_ms"] is None


def test_overloaded_is_retried_after_a_back_off_then_ok(fake: FakeFactory, images: Path) -> None:
    overloaded = fake("overloaded")
    run = overloaded.bench.run(
        {"imageDirectory": str(images), "timeoutS": 5, "retries": 2, "backoffS": 0.3}
    )
    assert run.rc == 0, run.stderr
    assert all(r["status"] == "ok" and r["attempts"] == 2 for r in run.jsonl)
    for rid, (first, second) in overloaded.received().items():
        # backoffS (plus jitter), far less than the 5 s timeout: the OVERLOADED answer counted.
        assert 0.3 <= second - first < 1.5, rid
    assert all(r["latency_ms"] >= 300 for r in run.jsonl)
    summary = overloaded.bench.summary(run)
    assert (summary["ok"], summary["retries"], summary["errors"]) == (3, 3, {})


def test_overloaded_after_the_last_retry_is_an_error_answer_and_exit_zero(
    fake: FakeFactory, images: Path
) -> None:
    overloaded = fake("overloaded")
    run = overloaded.bench.run({"imageDirectory": str(images), "retries": 0})
    assert run.rc == 0  # an error answer is an answer
    assert all(r["status"] == "error" and r["error"]["code"] == "OVERLOADED" for r in run.jsonl)
    assert {row["error_code"] for row in run.csv} == {"OVERLOADED"}
    summary = overloaded.bench.summary(run)
    assert summary["errors"] == {"OVERLOADED": 3}


def test_late_duplicate_answers_are_counted_and_ignored(fake: FakeFactory, images: Path) -> None:
    duplicate = fake("duplicate")  # every answer comes again 0.3 s later
    run = duplicate.bench.run({"imageDirectory": str(images), "intervalS": 0.8})
    assert run.rc == 0, run.stderr
    assert len(run.jsonl) == 3
    assert len({r["id"] for r in run.jsonl}) == 3
    assert all(r["attempts"] == 1 for r in run.jsonl)
    ignored = [e["id"] for e in run.log() if e["event"] == "requester.duplicate"]
    # The first two duplicates arrive while the run still waits on the next image (the last one
    # may come after the run has ended).
    first_two = sorted(r["id"] for r in run.jsonl)[:2]
    assert set(first_two) <= set(ignored)
    summary = duplicate.bench.summary(run)
    assert summary["duplicates"] == len(ignored)
    assert summary["count"] == 3


def test_repeat_zero_runs_until_stopped_then_publishes_its_summary(
    fake: FakeFactory, images: Path, tmp_path: Path
) -> None:
    ok = fake("ok")
    jsonl = tmp_path / "forever.jsonl"
    proc = ok.bench.start(
        {"imageDirectory": str(images), "repeat": 0, "intervalS": 0.05, "outputJsonl": str(jsonl)}
    )
    try:
        deadline = time.monotonic() + 10
        while len(read_jsonl(jsonl)) < 10 and time.monotonic() < deadline:
            assert proc.poll() is None, "a run with repeat 0 ended by itself"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
    finally:
        stop(proc)
    records = sorted(read_jsonl(jsonl), key=lambda r: r["id"])  # ids count up: request order
    assert len(records) >= 10
    assert len({r["id"] for r in records}) == len(records)  # ids unique across passes
    names = [Path(r["image"]).name for r in records]
    assert names[:6] == ["img0.png", "img1.png", "img2.png"] * 2  # pass after pass, sorted
    [summary] = ok.bench.summaries()
    assert summary["run_id"] == records[0]["id"].rsplit("-", 1)[0]
    assert summary["count"] == len(records)
    assert summary["ok"] == len(records)


def test_a_deployment_is_validated_and_applies_to_a_running_requester(
    fake: FakeFactory, images: Path, tmp_path: Path
) -> None:
    ok = fake("ok")
    jsonl = tmp_path / "live.jsonl"
    other = tmp_path / "other"
    other.mkdir()
    (other / "zebra.png").write_bytes((images / "img0.png").read_bytes())
    proc = ok.bench.start(
        {"imageDirectory": str(images), "repeat": 0, "intervalS": 0.05, "outputJsonl": str(jsonl)}
    )
    try:
        deadline = time.monotonic() + 10
        while not read_jsonl(jsonl) and time.monotonic() < deadline:
            time.sleep(0.05)
        rejected = ok.bench.core.deploy({"com.custom.requester": {"MERGE": {"maxInFlight": 0}}})
        assert rejected.status == "FAILED"
        assert "maxInFlight" in rejected.message
        missing = ok.bench.core.deploy(
            {"com.custom.requester": {"MERGE": {"imageDirectory": str(tmp_path / "nope")}}}
        )
        assert missing.status == "FAILED"
        applied = ok.bench.core.deploy(
            {"com.custom.requester": {"MERGE": {"imageDirectory": str(other)}}}
        )
        assert applied.status == "SUCCEEDED", applied.message
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if any(r["image"].endswith("zebra.png") for r in read_jsonl(jsonl)):
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the new imageDirectory was never used")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
    finally:
        stop(proc)
