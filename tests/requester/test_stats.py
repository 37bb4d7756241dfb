"""The summary's arithmetic: percentiles, latency figures and the tally of outcomes."""

from __future__ import annotations

import random

import numpy as np
import pytest
from ggvision_requester.stats import Latency, Outcome, Tally, percentile


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([5.0], 50, 5.0),
        ([5.0], 99, 5.0),
        ([1.0, 2.0], 50, 1.5),
        ([3.0, 1.0, 2.0], 50, 2.0),  # unsorted input
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([1.0, 2.0, 3.0, 4.0], 0, 1.0),
        ([1.0, 2.0, 3.0, 4.0], 100, 4.0),
        ([10.0, 20.0, 30.0, 40.0, 50.0], 95, 48.0),  # rank 3.8: 40 + 0.8 * 10
        (list(range(1, 101)), 99, 99.01),  # rank 98.01 of 1..100
    ],
)
def test_percentile_interpolates_between_ranks(
    values: list[float], q: float, expected: float
) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_matches_numpy_on_random_samples() -> None:
    rng = random.Random(7)
    for n in (1, 2, 3, 10, 101, 1000):
        values = [rng.expovariate(0.05) for _ in range(n)]
        for q in (0, 1, 50, 90, 95, 99, 99.9, 100):
            assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


@pytest.mark.parametrize(("values", "q"), [([], 50), ([1.0], -1), ([1.0], 101)])
def test_percentile_rejects_no_values_and_out_of_range(values: list[float], q: float) -> None:
    with pytest.raises(ValueError, match="percentile"):
        percentile(values, q)


def test_latency_of_no_values_is_none() -> None:
    assert Latency.of([]) is None


def test_latency_figures() -> None:
    lat = Latency.of([float(v) for v in range(1, 101)])
    assert lat == Latency(p50=50.5, p95=95.05, p99=99.01, max=100.0)


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
    # Sorted answered latencies: 5 6 10 20 30 40 1000; p95 at rank 5.7, p99 at rank 5.94.
    assert summary.latency_ms == Latency(p50=20.0, p95=712.0, p99=942.4, max=1000.0)
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
