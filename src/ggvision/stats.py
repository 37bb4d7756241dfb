"""The one definition of a percentile in ggvision: nearest rank.

The ``q``-th percentile (``q`` in 0-100) of ``n`` values is the value at rank ``ceil(q * n / 100)``
(1-based; rank 1 for ``q`` 0) of the sorted values: always a value that was observed, never an
average of two. It is ``numpy.percentile(values, q, method="inverted_cdf")``. Every figure that
ggvision calls "p50", "p95" or "p99" uses it: the components' status reports and telemetry, the
requester's summary, the camera's latency, ``ggvision core run --watch`` and the benchmarks. A
"median" (``statistics.median``, the mean of the two middle values when ``n`` is even) is a
different figure and is called so.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

_EPSILON = 1e-9


def rank(n: int, q: float) -> int:
    """The 0-based index of the ``q``-th percentile among ``n`` sorted values."""
    if n < 1:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q} is outside 0-100")
    # q * n first (0.95 * 60 is 57.00000000000001, 95 * 60 is 5700), and a tolerance far below one
    # rank for what is left: 99.9 * 41000 / 100 is 40959.00000000001, rank 40959.
    return min(n, max(1, math.ceil(q * n / 100.0 - _EPSILON))) - 1


def percentile_of_sorted(ordered: Sequence[float], q: float) -> float:
    """The ``q``-th percentile of values already sorted in ascending order."""
    return ordered[rank(len(ordered), q)]


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by nearest rank; ValueError for no values or a bad ``q``."""
    return percentile_of_sorted(sorted(values), q)


def percentiles(values: Iterable[float]) -> tuple[float | None, float | None]:
    """(p50, p95) rounded to 3 decimals, as status reports carry them; (None, None) without
    values."""
    ordered = sorted(values)
    if not ordered:
        return None, None
    return round(percentile_of_sorted(ordered, 50), 3), round(percentile_of_sorted(ordered, 95), 3)
