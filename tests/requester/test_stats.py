"""The summary's arithmetic: latency figures (percentiles by nearest rank, ``ggvision.stats``,
tested in tests/shared/test_stats.py) and the tally of outcomes."""

from __future__ import annotations

from ggvision_requester.stats import Latency, Outcome, Tally


def test_latency_of_no_values_is_none() -> None:
    assert Latency.of([]) is None


def test_latency_figures() -> None:
    lat = Latency.of([float(v) for v in range(1, 101)])
    assert lat == Latency(p50=50.0, p95=95.0, p99=99.0, max=100.0)


def _outcome(n: int, status: str, latency: float | None, code: str | None = None) -> Outcome:
    return Outcome(
        id=f"r{n}",
        seq=n,
        image=f"/i/{n}.jpg",
        status=status,  # type: ignore[arg-type]
        predictions=[{"label": "tabby", "index": 281, "score": 0.5}] if status == "ok" else [],
        error={"code": code, "message": "m"} if code else None,
        latency_ms=latency,
        attempts=1,
        transport="path",
    )


def test_tally_counts_outcomes_and_ignores_timeouts_in_latency() -> None:
    tally = Tally()
    for n, latency in enumerate([10.0, 20.0, 30.0, 40.0]):
        tally.add(_outcome(n, "ok", latency))
    tally.add(_outcome(4, "error", 1000.0, "IMAGE_NOT_FOUND"))
    tally.add(_outcome(5, "error", 5.0, "OVERLOADED"))
    tally.add(_outcome(6, "error", 6.0, "IMAGE_NOT_FOUND"))
    tally.add(_outcome(7, "timeout", None, "TIMEOUT"))
    tally.retries, tally.duplicates = 3, 1
    summary = tally.summary(elapsed_s=2.0)
    assert (summary.count, summary.ok, summary.timeouts) == (8, 4, 1)
    assert summary.errors == {"IMAGE_NOT_FOUND": 2, "OVERLOADED": 1}
    assert (summary.retries, summary.duplicates) == (3, 1)
    # Sorted answered latencies: 5 6 10 20 30 40 1000; p50 at rank ceil(3.5) = 4, p95 and p99
    # at rank 7 (nearest rank: an observed value).
    assert summary.latency_ms == Latency(p50=20.0, p95=1000.0, p99=1000.0, max=1000.0)
    assert summary.throughput_per_s == 4.0
    assert summary.to_json()["latency_ms"]["p50"] == 20.0


def test_outcome_record_has_the_top_prediction() -> None:
    record = _outcome(1, "ok", 12.5).to_json()
    assert (record["label"], record["score"], record["error"]) == ("tabby", 0.5, None)
    assert set(record) == {
        "id",
        "image",
        "status",
        "label",
        "score",
        "predictions",
        "error",
        "latency_ms",
        "attempts",
        "transport",
    }
