"""The outbox: a bounded FIFO of (topic, payload) in SQLite that survives restarts; the oldest
are evicted beyond its bounds, and a full disk drops the new message, counted."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

# The package's name, one logger across its modules (log lines keep their "logger" field).
log = logging.getLogger("ggvision.uplink")


def _is_full(exc: sqlite3.OperationalError) -> bool:
    return "full" in str(exc).lower()


class Outbox:
    """A bounded FIFO of (topic, payload) in SQLite. Use from one thread."""

    def __init__(self, path: Path, *, max_messages: int, max_bytes: int) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_messages = max_messages
        self.evicted = 0
        self.dropped_full = 0
        self._db = sqlite3.connect(str(self.path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        page = int(self._db.execute("PRAGMA page_size").fetchone()[0])
        self._db.execute(f"PRAGMA max_page_count={max(8, max_bytes // page)}")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox ("
            "seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB NOT NULL)"
        )
        self._count = int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def __len__(self) -> int:
        return self._count

    def put(self, topic: str, payload: bytes) -> bool:
        """Append; evicts the oldest beyond the bounds. False (counted) when it cannot be kept."""
        if self._count >= self.max_messages:
            self._evict(self._count - self.max_messages + 1)
        for attempt in range(2):
            try:
                self._db.execute(
                    "INSERT INTO outbox (topic, payload) VALUES (?, ?)", (topic, payload)
                )
                self._count += 1
                return True
            except sqlite3.OperationalError as exc:
                if not _is_full(exc):
                    raise
                if attempt == 0 and self._count:
                    # Full by the byte bound (or the disk): make room from the oldest end.
                    try:
                        self._evict(max(1, self._count // 100))
                        continue
                    except sqlite3.OperationalError as evict_exc:
                        if not _is_full(evict_exc):
                            raise
                        # A full disk refuses even the delete (its journal needs room too).
                self.dropped_full += 1
                log.error(
                    "uplink outbox is full; a message is dropped: %s",
                    exc,
                    extra={"event": "uplink.outbox_full"},
                )
                return False
        return False

    def oldest(self, n: int) -> list[tuple[int, str, bytes]]:
        rows = self._db.execute(
            "SELECT seq, topic, payload FROM outbox ORDER BY seq LIMIT ?", (n,)
        ).fetchall()
        return [(int(s), str(t), bytes(p)) for s, t, p in rows]

    def delete(self, seq: int) -> None:
        cur = self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
        self._count -= cur.rowcount

    def _evict(self, n: int) -> None:
        cur = self._db.execute(
            "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)", (n,)
        )
        self._count -= cur.rowcount
        self.evicted += cur.rowcount
        if cur.rowcount:
            log.warning(
                "uplink outbox over its bound: %d oldest evicted",
                cur.rowcount,
                extra={"event": "uplink.evicted"},
            )

    def close(self) -> None:
        self._db.close()
