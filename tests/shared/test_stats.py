"""ggvision's one percentile: nearest rank, numpy's ``inverted_cdf``; always an observed value."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import numpy as np
import pytest

from ggvision.stats import percentile, percentile_of_sorted, percentiles, rank


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([5.0], 50, 5.0),
        ([5.0], 99, 5.0),
        ([1.0, 2.0], 50, 1.0),  # rank ceil(1.0) = 1: no average of the two
        ([3.0, 1.0, 2.0], 50, 2.0),  # unsorted input
        ([1.0, 2.0, 3.0, 4.0], 50, 2.0),
        ([1.0, 2.0, 3.0, 4.0], 51, 3.0),
        ([1.0, 2.0, 3.0, 4.0], 0, 1.0),
        ([1.0, 2.0, 3.0, 4.0], 100, 4.0),
        ([10.0, 20.0, 30.0, 40.0, 50.0], 95, 50.0),  # rank ceil(4.75) = 5
        ([10.0, 20.0, 30.0, 40.0, 50.0], 80, 40.0),  # rank 4 exactly
        ([float(v) for v in range(1, 101)], 95, 95.0),
        ([float(v) for v in range(1, 101)], 99, 99.0),
        ([float(v) for v in range(1, 61)], 95, 57.0),  # q * n exact: not rank 58 by rounding
    ],
)
def test_percentile_by_nearest_rank(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == expected
    assert percentile_of_sorted(sorted(values), q) == expected


def test_percentile_is_numpys_inverted_cdf_on_random_samples() -> None:
    rng = random.Random(7)
    for n in (1, 2, 3, 10, 20, 60, 101, 1000):
        values = [rng.expovariate(0.05) for _ in range(n)]
        for q in (0, 1, 50, 90, 95, 99, 100):
            expected = float(np.percentile(values, q, method="inverted_cdf"))
            assert percentile(values, q) == expected, (n, q)


@pytest.mark.parametrize("q", [0.1, 2.5, 33.3, 95, 99, 99.9, 99.99])
def test_rank_is_exact_where_floats_are_not(q: float) -> None:
    # numpy computes q / 100 * n, which misses by one rank now and then (99.9th of 1000 values)
    for n in (*range(1, 2000), 41000, 82000, 83000):
        assert rank(n, q) == math.ceil(Fraction(str(q)) * n / 100) - 1, (n, q)


@pytest.mark.parametrize(("values", "q"), [([], 50), ([1.0], -1), ([1.0], 101)])
def test_percentile_rejects_no_values_and_out_of_range(values: list[float], q: float) -> None:
    with pytest.raises(ValueError, match="percentile") as err:
        percentile(values, q)
    assert ("no values" in str(err.value)) == (not values)


def test_rank_is_zero_based() -> None:
    assert [rank(4, q) for q in (0, 25, 26, 50, 75, 100)] == [0, 0, 1, 1, 2, 3]


def test_status_percentiles_are_p50_and_p95_rounded() -> None:
    assert percentiles([]) == (None, None)
    assert percentiles([5.0]) == (5.0, 5.0)
    assert percentiles([float(v) for v in range(1, 101)]) == (50.0, 95.0)
    assert percentiles(iter([3.0, 1.0, 2.0, 4.0])) == (2.0, 4.0)
    assert percentiles([1.23456, 2.0]) == (1.235, 2.0)
