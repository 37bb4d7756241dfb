"""Statistics, the printed table, and the JSON / markdown written under ``build/bench``."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Row:
    metric: str
    unit: str
    core: float
    baseline: float | None
    baseline_label: str
    target: str = ""
    met: bool | None = None  # None: no target for this row
    spread: str = ""  # min-max over runs

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.core / self.baseline


def _num(x: float) -> str:
    if x >= 1000:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.3f}"


def _ratio(ratio: float | None) -> str:
    if ratio is None:
        return "-"
    return f"{ratio:.0f}x" if ratio >= 10 else f"{ratio:.2g}x"


def _cells(row: Row) -> list[str]:
    ratio = row.ratio
    verdict = "" if row.met is None else ("met" if row.met else "NOT MET")
    return [
        f"{row.metric} ({row.unit})",
        _num(row.core) + (f"  [{row.spread}]" if row.spread else ""),
        f"{_num(row.baseline)} ({row.baseline_label})" if row.baseline is not None else "-",
        _ratio(ratio),
        row.target or "-",
        verdict or "-",
    ]


HEADER = [
    "metric",
    "ggvision core (median of runs [min-max])",
    "baseline",
    "ratio",
    "target",
    "verdict",
]


def text_table(rows: Sequence[Row]) -> str:
    cells = [HEADER, *[_cells(r) for r in rows]]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + " --- |" * len(HEADER)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def write(outdir: Path, results: dict[str, Any], rows: Sequence[Row], notes: Sequence[str]) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    doc = dict(results)
    doc["table"] = [
        {
            "metric": r.metric,
            "unit": r.unit,
            "core": r.core,
            "baseline": r.baseline,
            "baseline_label": r.baseline_label,
            "ratio": r.ratio,
            "target": r.target,
            "met": r.met,
        }
        for r in rows
    ]
    (outdir / "ipc.json").write_text(json.dumps(doc, indent=2) + "\n")
    md = ["## IPC core: real clients vs raw Unix socket", "", markdown_table(rows), ""]
    md += [f"* {n}" for n in notes]
    (outdir / "ipc.md").write_text("\n".join(md) + "\n")


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float], scale: float = 1.0) -> str:
    return f"{_num(min(values) * scale)}-{_num(max(values) * scale)}" if len(values) > 1 else ""
