"""What every benchmark shares: its command line and run preamble, statistics, verdicts, the
printed tables, and the JSON / markdown written under ``build/bench``.

Percentiles are ggvision's one definition (nearest rank, :mod:`ggvision.stats`); a median is
``statistics.median``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ggvision.stats import percentile as percentile

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "build" / "bench"
MODEL_STORE_ENV = "GGV_MODEL_STORE"


# --- the preamble of a benchmark's main ----------------------------------------------------------
def parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """A benchmark's command line: its module docstring as help, and ``--out``."""
    p = argparse.ArgumentParser(
        prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, default=OUT, help="where the JSON and markdown go")
    return p


def model_store() -> Path:
    """``$GGV_MODEL_STORE``, else ``build/model-store`` (``make models``)."""
    env_store = os.environ.get(MODEL_STORE_ENV)
    return Path(env_store) if env_store else REPO / "build" / "model-store"


@dataclass(frozen=True)
class Run:
    """When a benchmark started and how loaded the machine was before it."""

    started: float = field(default_factory=time.monotonic)
    load_before: float = field(default_factory=lambda: os.getloadavg()[0])

    def wall_s(self) -> float:
        return round(time.monotonic() - self.started, 1)

    def machine(self) -> dict[str, Any]:
        """The setup keys every benchmark records about the machine and the run."""
        return {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "loadavg_1min_before": self.load_before,
            "wall_s": self.wall_s(),
        }


# --- verdicts and tables -------------------------------------------------------------------------
def verdict(met: bool | None) -> str:
    """``met``, ``NOT MET``, or ``-`` for a figure without a target."""
    return "-" if met is None else ("met" if met else "NOT MET")


def verdict_table(first: str, rows: Sequence[tuple[str, str, str, bool | None]]) -> list[str]:
    """A markdown table of (figure, value, target, met) with a verdict column."""
    lines = [f"| {first} | value | target | verdict |", "| --- | --- | --- | --- |"]
    lines += [
        f"| {name} | {value} | {target} | {verdict(met)} |" for name, value, target, met in rows
    ]
    return lines


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
    return [
        f"{row.metric} ({row.unit})",
        _num(row.core) + (f"  [{row.spread}]" if row.spread else ""),
        f"{_num(row.baseline)} ({row.baseline_label})" if row.baseline is not None else "-",
        _ratio(ratio),
        row.target or "-",
        verdict(row.met),
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


def show(lines: Sequence[str], notes: Sequence[str]) -> None:
    """Print a benchmark's tables, a blank line, then its notes as bullets."""
    print("\n".join(lines))
    print()
    print("\n".join(f"* {n}" for n in notes))


def publish(
    outdir: Path,
    name: str,
    title: str,
    doc: dict[str, Any],
    lines: Sequence[str],
    notes: Sequence[str],
) -> tuple[Path, Path]:
    """Write ``outdir/name.json`` (``doc``) and ``outdir/name.md`` (title, tables, notes)."""
    outdir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = outdir / f"{name}.json", outdir / f"{name}.md"
    json_path.write_text(json.dumps(doc, indent=2) + "\n")
    md = [f"## {title}", "", *lines, ""]
    md += [f"* {n}" for n in notes]
    md_path.write_text("\n".join(md) + "\n")
    return json_path, md_path


def wrote(paths: tuple[Path, Path], suffix: str = "") -> None:
    print(f"\nwrote {paths[0]} and {paths[1]}{suffix}")


def finish(
    outdir: Path,
    name: str,
    title: str,
    doc: dict[str, Any],
    lines: Sequence[str],
    notes: Sequence[str],
) -> int:
    """A benchmark's ending: :func:`show`, :func:`publish`, :func:`wrote`; returns exit code 0."""
    show(lines, notes)
    wrote(publish(outdir, name, title, doc, lines, notes))
    return 0


def classifier_threads(threads: int) -> int:
    """``threads``, or for 0 the classifier's default inference thread count."""
    if threads:
        return threads
    from ggvision_classifier.config import ClassifierConfig

    return ClassifierConfig(threads=0).inference_threads


def missing_model(store: Path, key: str) -> bool:
    """True (after saying so on stderr) when ``store`` has no model ``key``."""
    if (store / key / "manifest.json").is_file():
        return False
    print(f"no {key} model in {store}: build it with `make models`", file=sys.stderr)
    return True


def write(
    outdir: Path, results: dict[str, Any], rows: Sequence[Row], notes: Sequence[str]
) -> tuple[Path, Path]:
    """The IPC benchmark's ``ipc.json`` (results plus the table) and ``ipc.md``."""
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
    title = "IPC core: real clients vs raw Unix socket"
    return publish(outdir, "ipc", title, doc, [markdown_table(rows)], notes)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float], scale: float = 1.0) -> str:
    return f"{_num(min(values) * scale)}-{_num(max(values) * scale)}" if len(values) > 1 else ""
