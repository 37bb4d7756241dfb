"""Requests awaiting their answer, by id: what a client of the classifier keeps between the two.

Every id a :class:`Correlator` hands out starts with its prefix (unique per client and run), so
the client recognises its own answers among everybody's on a shared result topic
(:meth:`Correlator.owns`) before decoding them further. A pending request has a deadline; the
client collects the overdue ones (:meth:`Correlator.overdue`) and either arms them again (a
retry, same id) or gives up on them (:meth:`Correlator.expire`). An answer settles its request
once (:meth:`Correlator.settle`); one that comes after that is counted, never matched again: late
(its request had been given up on) or duplicate (its request was already answered).

Not thread-safe: the client serialises calls (one owning thread, or its own lock).
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

T = TypeVar("T")

REMEMBER = 1024  # settled and expired ids remembered, to tell late and duplicate answers apart


class Unmatched(StrEnum):
    """Why an answer matched no pending request."""

    LATE = "late"  # its request had been given up on (expired)
    DUPLICATE = "duplicate"  # its request was already answered
    UNKNOWN = "unknown"  # ours by prefix, but never pending, or forgotten since


def unique_prefix(name: str) -> str:
    """``<name>-<8 hex>-``: ids unique across restarts, so a previous run's answer never matches."""
    return f"{name}-{uuid.uuid4().hex[:8]}-"


@dataclass(slots=True)
class _Entry(Generic[T]):
    item: T
    deadline: float | None


class Correlator(Generic[T]):
    """Pending requests by id, each with the client's own record ``T`` and a deadline."""

    def __init__(self, prefix: str, *, remember: int = REMEMBER) -> None:
        self.prefix = prefix
        self._remember = remember
        self._pending: dict[str, _Entry[T]] = {}
        self._expired: OrderedDict[str, None] = OrderedDict()
        self._settled: OrderedDict[str, None] = OrderedDict()
        self.late = 0
        self.duplicates = 0

    # --- ids -------------------------------------------------------------------------------------
    def new_id(self, suffix: str | int) -> str:
        return f"{self.prefix}{suffix}"

    def owns(self, rid: str) -> bool:
        """Whether ``rid`` is one of this correlator's ids (pending or not)."""
        return rid.startswith(self.prefix)

    # --- pending requests ------------------------------------------------------------------------
    def add(self, rid: str, item: T, deadline: float | None) -> None:
        self._pending[rid] = _Entry(item, deadline)

    def arm(self, rid: str, deadline: float | None) -> None:
        """A new deadline for a pending request (a retry); None: not awaiting an answer now."""
        self._pending[rid].deadline = deadline

    def get(self, rid: str) -> T | None:
        entry = self._pending.get(rid)
        return None if entry is None else entry.item

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, rid: object) -> bool:
        return rid in self._pending

    def items(self) -> Iterator[T]:
        """The pending requests' records, oldest first (a snapshot: safe to change meanwhile)."""
        return iter([e.item for e in self._pending.values()])

    def deadlines(self) -> list[float]:
        return [e.deadline for e in self._pending.values() if e.deadline is not None]

    def next_deadline(self) -> float | None:
        return min(self.deadlines(), default=None)

    def overdue(self, now: float) -> list[tuple[str, T]]:
        """The pending requests whose deadline has come (they stay pending: arm or expire them)."""
        return [
            (rid, e.item)
            for rid, e in self._pending.items()
            if e.deadline is not None and now >= e.deadline
        ]

    # --- the end of a request --------------------------------------------------------------------
    def settle(self, rid: str) -> T | Unmatched:
        """Match an answer: the pending request's record, or why there is none (and count it)."""
        entry = self._pending.pop(rid, None)
        if entry is not None:
            self._keep(self._settled, rid)
            return entry.item
        if rid in self._expired:
            del self._expired[rid]
            self.late += 1
            self._keep(self._settled, rid)  # a third answer is a duplicate
            return Unmatched.LATE
        if rid in self._settled:
            self.duplicates += 1
            return Unmatched.DUPLICATE
        return Unmatched.UNKNOWN

    def expire(self, rid: str) -> T:
        """Give up on a pending request: an answer after this is late."""
        entry = self._pending.pop(rid)
        self._keep(self._expired, rid)
        return entry.item

    def discard(self, rid: str) -> T | None:
        """Forget a pending request that never reached the bus (its publish failed)."""
        entry = self._pending.pop(rid, None)
        return None if entry is None else entry.item

    def _keep(self, memory: OrderedDict[str, None], rid: str) -> None:
        memory[rid] = None
        while len(memory) > self._remember:
            memory.popitem(last=False)
