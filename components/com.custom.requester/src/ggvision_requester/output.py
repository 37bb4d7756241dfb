"""Where outcomes go: JSON Lines, CSV, annotated copies, the log, and a table for people.

Each record is written (and flushed) as its request completes, so a run that loops forever or is
stopped leaves complete lines behind.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, TextIO

from ggvision.errors import GgvisionError
from ggvision_requester.annotate import AnnotateError, annotate
from ggvision_requester.stats import Outcome, Summary

log = logging.getLogger(__name__)

CSV_COLUMNS = (
    "id",
    "image",
    "status",
    "label",
    "score",
    "error_code",
    "error_message",
    "latency_ms",
    "attempts",
)


class OutputError(GgvisionError):
    """An output file cannot be opened."""


def _open(path: str, what: str) -> IO[str]:
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        return target.open("w", encoding="utf-8", newline="")
    except OSError as exc:
        raise OutputError(f"cannot open {what} {target}: {exc.strerror or exc}") from exc


class Recorder:
    """Writes each outcome to the configured outputs; keeps them for the table when asked to."""

    def __init__(
        self,
        jsonl: str = "",
        csv_path: str = "",
        annotate_directory: Callable[[], str] = lambda: "",
        keep: bool = False,
    ) -> None:
        self._jsonl = _open(jsonl, "outputJsonl") if jsonl else None
        try:
            self._csv_file = _open(csv_path, "outputCsv") if csv_path else None
        except OutputError:
            self.close()
            raise
        self._csv = csv.writer(self._csv_file) if self._csv_file else None
        if self._csv is not None:
            self._csv.writerow(CSV_COLUMNS)
        self._annotate_directory = annotate_directory
        self.kept: list[Outcome] | None = [] if keep else None
        self.annotate_failures = 0
        self.write_failures = 0

    def record(self, outcome: Outcome) -> None:
        log.info(
            "%s %s %s",
            outcome.id,
            outcome.status,
            outcome.label or outcome.code,
            extra={
                "event": "requester.result",
                "id": outcome.id,
                "image": outcome.image,
                "status": outcome.status,
                "label": outcome.label,
                "score": outcome.score,
                "code": outcome.code,
                "latency_ms": outcome.latency_ms,
                "attempts": outcome.attempts,
            },
        )
        try:
            self._write(outcome)
        except OSError as exc:  # a full disk loses records, not the run
            self.write_failures += 1
            log.error(
                "writing the result of %s failed: %s",
                outcome.id,
                exc,
                extra={"event": "requester.write_failed", "id": outcome.id},
            )
        directory = self._annotate_directory()
        if directory and outcome.status == "ok" and outcome.label is not None:
            try:
                annotate(
                    Path(outcome.image),
                    Path(directory),
                    f"{outcome.label} {outcome.score or 0.0:.2f}",
                )
            except AnnotateError as exc:
                self.annotate_failures += 1
                log.warning(
                    "annotation failed: %s",
                    exc,
                    extra={"event": "requester.annotate_failed", "id": outcome.id},
                )
        if self.kept is not None:
            self.kept.append(outcome)

    def _write(self, outcome: Outcome) -> None:
        if self._jsonl is not None:
            self._jsonl.write(json.dumps(outcome.to_json(), ensure_ascii=False) + "\n")
            self._jsonl.flush()
        if self._csv is not None and self._csv_file is not None:
            err = outcome.error or {}
            self._csv.writerow(
                [
                    outcome.id,
                    outcome.image,
                    outcome.status,
                    outcome.label or "",
                    "" if outcome.score is None else f"{outcome.score:.6f}",
                    err.get("code", ""),
                    err.get("message", ""),
                    "" if outcome.latency_ms is None else f"{outcome.latency_ms:.3f}",
                    outcome.attempts,
                ]
            )
            self._csv_file.flush()

    def close(self) -> None:
        for f in (getattr(self, "_jsonl", None), getattr(self, "_csv_file", None)):
            if f is not None:
                f.close()


def print_table(outcomes: Iterable[Outcome], summary: Summary, out: TextIO) -> None:
    """A human-readable table of the outcomes (in request order) and the summary."""
    rows = [("image", "status", "label/error", "score", "ms", "tries")]
    for o in sorted(outcomes, key=lambda o: o.seq):
        rows.append(
            (
                Path(o.image).name,
                o.status if o.status != "error" else o.code or "error",
                o.label or (o.error or {}).get("message", "")[:40],
                "" if o.score is None else f"{o.score:.3f}",
                "" if o.latency_ms is None else f"{o.latency_ms:.1f}",
                str(o.attempts),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        cells = [
            c.rjust(w) if i >= 3 else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip(), file=out)
        if n == 0:
            print("  ".join("-" * w for w in widths), file=out)
    s = summary
    errors = ", ".join(f"{code} {n}" for code, n in s.errors.items()) or "none"
    print(
        f"\n{s.count} requests: {s.ok} ok, errors: {errors}, timeouts {s.timeouts}, "
        f"retries {s.retries}, duplicates {s.duplicates}",
        file=out,
    )
    if s.latency_ms is not None:
        lat = s.latency_ms
        print(
            f"latency ms: p50 {lat.p50:.1f}  p95 {lat.p95:.1f}  p99 {lat.p99:.1f}  "
            f"max {lat.max:.1f}",
            file=out,
        )
    print(f"{s.elapsed_s:.2f} s, {s.throughput_per_s:.2f} requests/s", file=out)
