"""What happened to each request (:class:`Outcome`) and the run's :class:`Summary`.

Latency percentiles are by nearest rank (:mod:`ggvision.stats`), as in every status report.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ggvision.stats import percentile_of_sorted

Status = Literal["ok", "error", "timeout"]
TIMEOUT = "TIMEOUT"  # the error code a request gets when no answer came after every attempt
# Percentiles use the latest this many latencies (a run that loops forever stays bounded);
# the maximum covers the whole run.
LATENCY_WINDOW = 100_000


@dataclass(frozen=True, slots=True)
class Outcome:
    """The final word on one request: an answer (ok or error) or a timeout after every attempt.

    ``transport`` is how the request carried the image: ``path``, ``inline`` or ``seed``.
    ``latency_ms`` runs from the first attempt's publication to the answer, retries included
    (``None`` for a timeout).
    """

    id: str
    seq: int
    image: str
    status: Status
    predictions: list[dict[str, Any]]
    error: dict[str, str] | None
    latency_ms: float | None
    attempts: int
    transport: str

    @property
    def label(self) -> str | None:
        return str(self.predictions[0]["label"]) if self.predictions else None

    @property
    def score(self) -> float | None:
        return float(self.predictions[0]["score"]) if self.predictions else None

    @property
    def code(self) -> str | None:
        return self.error["code"] if self.error else None

    def to_json(self) -> dict[str, Any]:
        """One JSON Lines record."""
        return {
            "id": self.id,
            "image": self.image,
            "status": self.status,
            "label": self.label,
            "score": self.score,
            "predictions": self.predictions,
            "error": self.error,
            "latency_ms": self.latency_ms,
            "attempts": self.attempts,
            "transport": self.transport,
        }


@dataclass(frozen=True, slots=True)
class Latency:
    p50: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float], maximum: float | None = None) -> Latency | None:
        if not values:
            return None
        ordered = sorted(values)
        top = ordered[-1] if maximum is None else maximum
        p50, p95, p99 = (round(percentile_of_sorted(ordered, q), 3) for q in (50, 95, 99))
        return cls(p50=p50, p95=p95, p99=p99, max=round(top, 3))


@dataclass(frozen=True, slots=True)
class Summary:
    count: int
    ok: int
    errors: dict[str, int]
    timeouts: int
    retries: int
    duplicates: int
    latency_ms: Latency | None
    elapsed_s: float
    throughput_per_s: float
    unanswered: int = 0  # in flight when the run was stopped

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "count": self.count,
            "ok": self.ok,
            "errors": dict(self.errors),
            "timeouts": self.timeouts,
            "retries": self.retries,
            "duplicates": self.duplicates,
            "unanswered": self.unanswered,
            "latency_ms": None,
            "elapsed_s": self.elapsed_s,
            "throughput_per_s": self.throughput_per_s,
        }
        if self.latency_ms is not None:
            lat = self.latency_ms
            out["latency_ms"] = {"p50": lat.p50, "p95": lat.p95, "p99": lat.p99, "max": lat.max}
        return out


@dataclass
class Tally:
    """Running counts; ``summary()`` turns them into a :class:`Summary`."""

    count: int = 0
    ok: int = 0
    timeouts: int = 0
    retries: int = 0
    duplicates: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    max_latency: float = 0.0

    def add(self, outcome: Outcome) -> None:
        self.count += 1
        if outcome.status == "ok":
            self.ok += 1
        elif outcome.status == "timeout":
            self.timeouts += 1
        else:
            self.errors[outcome.code or "UNKNOWN"] += 1
        if outcome.latency_ms is not None:
            self.latencies.append(outcome.latency_ms)
            self.max_latency = max(self.max_latency, outcome.latency_ms)

    def summary(self, elapsed_s: float, unanswered: int = 0) -> Summary:
        return Summary(
            count=self.count,
            ok=self.ok,
            errors=dict(sorted(self.errors.items())),
            timeouts=self.timeouts,
            retries=self.retries,
            duplicates=self.duplicates,
            latency_ms=Latency.of(list(self.latencies), self.max_latency),
            elapsed_s=round(elapsed_s, 3),
            throughput_per_s=round(self.count / elapsed_s, 3) if elapsed_s > 0 else 0.0,
            unanswered=unanswered,
        )
