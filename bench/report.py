"""One markdown report of every benchmark's ratios, met / NOT MET per target.

Reads what ``bench.ipc``, ``bench.classifier``, ``bench.pipeline``, ``bench.detector``,
``bench.liveview``, ``bench.imprint`` and ``bench.multicamera`` wrote
(``DIR/*.json``, default ``build/bench``) and writes ``DIR/REPORT.md``; a benchmark that did not
run is listed as "not run", so a regression or a gap is visible at a glance. ``make bench`` runs
it last.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import _report
from bench.classifier import (
    DEFAULT_VARIANT,
    TARGET_COLD_S,
    TARGET_DEFAULT_VS_FASTEST,
    TARGET_RSS_MB,
    floor_target,
)
from bench.detector import TARGET_PIPELINE as TARGET_DETECT_PIPELINE
from bench.imprint import TARGET_ADD_OVER_INFER_MS, TARGET_CLASSIFY_RATIO
from bench.liveview import TARGET_NO_VIEWER, TARGET_ONE_VIEWER
from bench.multicamera import LABELS as MULTICAMERA_LABELS
from bench.pipeline import TARGET_BARE, TARGET_SYNC


@dataclass(frozen=True)
class Line:
    area: str
    figure: str
    value: str
    target: str
    met: bool | None  # None: measured, no target

    @property
    def verdict(self) -> str:
        return _report.verdict(self.met)


def _fmt(x: Any, suffix: str = "") -> str:
    if not isinstance(x, int | float) or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return (f"{x:.0f}" if abs(x) >= 100 else f"{x:.2f}") + suffix


def ipc_lines(doc: dict[str, Any]) -> Iterator[Line]:
    for row in doc.get("table", []):
        ratio = row.get("ratio")
        value = _fmt(row.get("core")) + f" {row.get('unit', '')}".rstrip()
        if ratio is not None:
            value += f" ({_fmt(ratio, 'x')} of {row.get('baseline_label', 'baseline')})"
        yield Line(
            "IPC", str(row.get("metric", "?")), value, row.get("target") or "-", row.get("met")
        )


def classifier_lines(doc: dict[str, Any]) -> Iterator[Line]:
    verdicts = doc.get("verdicts", {})
    if "default_vs_fastest" in verdicts:
        yield Line(
            "classifier",
            f"default ({DEFAULT_VARIANT}) / fastest ({verdicts.get('fastest_variant', '?')})",
            _fmt(verdicts["default_vs_fastest"], "x"),
            f"<= {TARGET_DEFAULT_VS_FASTEST}x",
            verdicts.get("default_vs_fastest_met"),
        )
    default = doc.get("variants", {}).get(DEFAULT_VARIANT, {})
    if "cold_start_met" in verdicts:
        yield Line(
            "classifier",
            "cold start to first result",
            _fmt(default.get("cold_start_s"), " s"),
            f"<= {TARGET_COLD_S} s",
            verdicts["cold_start_met"],
        )
    if "rss_met" in verdicts:
        yield Line(
            "classifier",
            "peak RSS",
            _fmt(default.get("peak_rss_mb"), " MB"),
            f"<= {TARGET_RSS_MB:.0f} MB",
            verdicts["rss_met"],
        )
    target = _floor(doc)
    for variant, row in doc.get("variants", {}).items():
        if "overhead_met" in row:
            yield Line(
                "classifier",
                f"IPC overhead, {variant}",
                f"{_fmt(row.get('overhead_ms'), ' ms')} "
                f"({_fmt(100 * row.get('overhead_fraction', math.nan), ' %')})",
                target,
                row["overhead_met"],
            )


def _floor(doc: dict[str, Any]) -> str:
    """The IPC overhead's target of a classifier/detector run: the floor it measured."""
    median = (doc.get("ipc_floor") or {}).get("publish_event_median_ms")
    return floor_target(median) if isinstance(median, int | float) else "-"


def pipeline_lines(doc: dict[str, Any]) -> Iterator[Line]:
    ratios = doc.get("ratios", {})
    for key, label, target in (
        ("suite_over_bare", "suite / bare backend (frames/s)", TARGET_BARE),
        ("suite_over_sync", "suite / synchronous loop (frames/s)", TARGET_SYNC),
    ):
        if key in ratios:
            value = ratios[key]
            yield Line("pipeline", label, _fmt(value, "x"), f">= {target}x", value >= target)
    for row in doc.get("budget", []):  # the CPU budget per frame of each process
        unit = str(row.get("unit", ""))
        yield Line(
            "budget",
            f"CPU, {row.get('process')}",
            f"{_fmt(row.get('value'))} {unit}",
            f"<= {_fmt(row.get('target'))} {unit}",
            row.get("met"),
        )


def detector_lines(doc: dict[str, Any]) -> Iterator[Line]:
    pipe = doc.get("pipeline") or {}
    if "ratio" in pipe:
        yield Line(
            "detector",
            f"camera -> detector ({pipe.get('variant')}) / bare detect loop (frames/s)",
            _fmt(pipe["ratio"], "x"),
            f">= {TARGET_DETECT_PIPELINE}x",
            pipe["ratio"] >= TARGET_DETECT_PIPELINE,
        )
    target = _floor(doc)
    for variant, row in doc.get("variants", {}).items():
        yield Line(
            "detector",
            f"inference, {variant} ({row.get('backend')} {row.get('precision')})",
            f"{_fmt(row.get('infer_ms_1t'), ' ms')} (1t), {_fmt(row.get('infer_ms_2t'), ' ms')}"
            " (2t)",
            "-",
            None,
        )
        if "overhead_met" in row:
            yield Line(
                "detector",
                f"IPC overhead, {variant}",
                f"{_fmt(row.get('overhead_ms'), ' ms')} "
                f"({_fmt(100 * row.get('overhead_fraction', math.nan), ' %')})",
                target,
                row["overhead_met"],
            )


def liveview_lines(doc: dict[str, Any]) -> Iterator[Line]:
    for key, label, target in (
        ("one_viewer", "CPU with one viewer (% of one core)", TARGET_ONE_VIEWER),
        ("none", "CPU with no viewer (% of one core)", TARGET_NO_VIEWER),
    ):
        value = doc.get(key, {}).get("cpu_percent")
        if isinstance(value, int | float):
            yield Line("live view", label, _fmt(value, " %"), f"<= {target:g} %", value <= target)


def imprint_lines(doc: dict[str, Any]) -> Iterator[Line]:
    add, cls = doc.get("add", {}), doc.get("classify", {})
    if "met" in add:
        yield Line(
            "imprint",
            "add one shot (inference + imprint)",
            f"{_fmt(add.get('add_ms'), ' ms')} (inference {_fmt(add.get('infer_ms'), ' ms')})",
            f"<= inference + {TARGET_ADD_OVER_INFER_MS:g} ms",
            add["met"],
        )
    if "met" in cls:
        yield Line(
            "imprint",
            "classify, 100 learned classes / none",
            _fmt(cls.get("ratio"), "x"),
            f"<= {TARGET_CLASSIFY_RATIO}x",
            cls["met"],
        )
    for name, row in doc.get("accuracy", {}).items():
        value = ", ".join(f"k={k}: {_fmt(v)}" for k, v in row.items())
        yield Line("imprint", f"held-out top-1, {name}", value, "-", None)


def multicamera_lines(doc: dict[str, Any]) -> Iterator[Line]:
    """A group of rows per camera count, each figure with its verdict (bench.multicamera's)."""
    for count, rows in doc.get("verdicts", {}).items():
        cameras = f"{count} camera{'s' if count != '1' else ''}"
        for key, row in rows.items():
            label = MULTICAMERA_LABELS.get(key, key)
            yield Line(
                "multicamera",
                f"{cameras}: {label}",
                _fmt(row.get("value")),
                row["target"],
                row["met"],
            )


SOURCES = (
    ("ipc.json", "IPC", "python -m bench.ipc", ipc_lines),
    ("classifier.json", "classifier", "python -m bench.classifier", classifier_lines),
    ("pipeline.json", "pipeline", "python -m bench.pipeline", pipeline_lines),
    ("detector.json", "detector", "python -m bench.detector", detector_lines),
    ("liveview.json", "live view", "python -m bench.liveview", liveview_lines),
    ("imprint.json", "imprint", "python -m bench.imprint", imprint_lines),
    ("multicamera.json", "multicamera", "python -m bench.multicamera", multicamera_lines),
)


def collect(directory: Path) -> list[Line]:
    lines: list[Line] = []
    for name, area, command, read in SOURCES:
        path = directory / name
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            lines.append(Line(area, f"not run (no readable {name}: `{command}`)", "-", "-", False))
            continue
        lines.extend(read(doc))
    return lines


def render(lines: list[Line]) -> str:
    missed = [x for x in lines if x.met is False]
    out = [
        "# Benchmark report",
        "",
        f"{sum(x.met is True for x in lines)} targets met, {len(missed)} NOT MET"
        + (": " + "; ".join(f"{x.area} {x.figure}" for x in missed) if missed else "."),
        "",
        "| area | figure | value | target | verdict |",
        "| --- | --- | --- | --- | --- |",
    ]
    out += [f"| {x.area} | {x.figure} | {x.value} | {x.target} | {x.verdict} |" for x in lines]
    out += [
        "",
        "Details: ipc.md, classifier.md, pipeline.md, detector.md, liveview.md, imprint.md and "
        "multicamera.md beside this file.",
    ]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__)
    parser.add_argument("--dir", type=Path, default=_report.OUT)
    args = parser.parse_args(argv)
    text = render(collect(args.dir))
    args.dir.mkdir(parents=True, exist_ok=True)
    (args.dir / "REPORT.md").write_text(text, encoding="utf-8")
    print(text, end="")
    print(f"wrote {args.dir / 'REPORT.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
