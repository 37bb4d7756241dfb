"""bench/report.py on small synthetic benchmark outputs: one report, a verdict per target."""

from __future__ import annotations

import json
from pathlib import Path

from bench import report


def write(directory: Path, name: str, doc: dict[str, object]) -> None:
    (directory / name).write_text(json.dumps(doc))


def test_report_lists_every_ratio_with_its_verdict(tmp_path: Path) -> None:
    write(
        tmp_path,
        "ipc.json",
        {
            "table": [
                {
                    "metric": "publish rate",
                    "unit": "msg/s",
                    "core": 9000.0,
                    "baseline": 10000.0,
                    "baseline_label": "raw socket",
                    "ratio": 0.9,
                    "target": ">= 0.5x",
                    "met": True,
                },
                {
                    "metric": "p99 latency",
                    "unit": "ms",
                    "core": 4.0,
                    "baseline": 1.0,
                    "baseline_label": "raw socket",
                    "ratio": 4.0,
                    "target": "<= 3x",
                    "met": False,
                },
            ]
        },
    )
    write(
        tmp_path,
        "classifier.json",
        {
            "variants": {
                "tflite-int8": {
                    "cold_start_s": 1.5,
                    "peak_rss_mb": 150.0,
                    "overhead_ms": 0.4,
                    "overhead_fraction": 0.02,
                    "overhead_met": True,
                },
            },
            "ipc_floor": {"publish_event_median_ms": 0.3, "floor_ms": 0.9},
            "verdicts": {
                "fastest_variant": "tflite-int8",
                "default_vs_fastest": 1.0,
                "default_vs_fastest_met": True,
                "cold_start_met": True,
                "rss_met": True,
            },
        },
    )
    write(tmp_path, "pipeline.json", {"ratios": {"suite_over_bare": 0.95, "suite_over_sync": 1.1}})
    write(
        tmp_path,
        "detector.json",
        {
            "variants": {
                "ssd-int8": {
                    "backend": "tflite",
                    "precision": "int8",
                    "infer_ms_1t": 9.0,
                    "infer_ms_2t": 6.0,
                    "overhead_ms": 1.5,
                    "overhead_fraction": 0.25,
                    "overhead_met": False,
                },
            },
            "ipc_floor": {"publish_event_median_ms": 0.45, "floor_ms": 1.2},
            "pipeline": {"variant": "ssd-int8", "ratio": 0.93},
        },
    )
    write(
        tmp_path,
        "liveview.json",
        {"one_viewer": {"cpu_percent": 6.5}, "none": {"cpu_percent": 1.5}},
    )
    write(
        tmp_path,
        "imprint.json",
        {
            "add": {"add_ms": 5.4, "infer_ms": 4.6, "met": True},
            "classify": {"ratio": 1.08, "met": False},
            "accuracy": {"lfw": {"1": 0.9, "10": 1.0}},
        },
    )
    write(
        tmp_path,
        "multicamera.json",
        {
            "verdicts": {
                "1": {"aggregate_over_bare": {"value": 0.95, "target": ">= 0.9", "met": True}},
                "8": {
                    "aggregate_over_bare": {"value": 0.85, "target": ">= 0.9", "met": False},
                    "jain": {"value": 0.99, "target": ">= 0.95", "met": True},
                    "rss_with_rings_over_1": {"value": 1.5, "target": "-", "met": None},
                },
            }
        },
    )

    assert report.main(["--dir", str(tmp_path)]) == 0
    text = (tmp_path / "REPORT.md").read_text()
    rows = {line.split(" | ")[1]: line for line in text.splitlines() if line.startswith("| ")}
    assert rows["publish rate"].endswith("| met |")
    assert rows["p99 latency"].endswith("| NOT MET |")
    assert rows["peak RSS"].endswith("| met |")
    assert rows["IPC overhead, tflite-int8"].endswith("| met |")
    assert rows["suite / bare backend (frames/s)"].endswith("| met |")
    assert rows["suite / synchronous loop (frames/s)"].endswith("| NOT MET |")
    assert rows["camera -> detector (ssd-int8) / bare detect loop (frames/s)"].endswith("| met |")
    assert rows["IPC overhead, ssd-int8"].endswith("| NOT MET |")
    assert "| <= 0.90 ms (2 x publish->event 0.300 ms + 0.3) |" in rows["IPC overhead, tflite-int8"]
    assert "| <= 1.20 ms (2 x publish->event 0.450 ms + 0.3) |" in rows["IPC overhead, ssd-int8"]
    assert rows["inference, ssd-int8 (tflite int8)"].startswith("| detector | inference")
    assert rows["CPU with one viewer (% of one core)"].endswith("| met |")
    assert rows["CPU with no viewer (% of one core)"].endswith("| NOT MET |")
    assert rows["add one shot (inference + imprint)"].endswith("| met |")
    assert rows["classify, 100 learned classes / none"].endswith("| NOT MET |")
    assert "k=1: 0.90, k=10: 1.00" in rows["held-out top-1, lfw"]
    assert rows["1 camera: aggregate results/s / bare backend loop"].endswith("| met |")
    assert rows["8 cameras: aggregate results/s / bare backend loop"].endswith("| NOT MET |")
    assert rows["8 cameras: Jain's index of per-camera results/s"].endswith(
        "| 0.99 | >= 0.95 | met |"
    )
    assert rows["8 cameras: classifier RSS with the rings / at 1 camera"].endswith("| - |")
    assert "11 targets met, 6 NOT MET" in text


def test_the_cpu_budget_per_frame_is_one_row_per_process(tmp_path: Path) -> None:
    budget = [
        {"process": "classifier", "value": 6.2, "target": 6.1, "unit": "ms/frame", "met": False},
        {"process": "camera", "value": 1.4, "target": 1.5, "unit": "ms/frame", "met": True},
        {"process": "core", "value": 48.0, "target": 50.0, "unit": "us/message", "met": True},
    ]
    write(tmp_path, "pipeline.json", {"ratios": {}, "budget": budget})
    lines = [x for x in report.collect(tmp_path) if x.area == "budget"]
    assert [(x.figure, x.value, x.target, x.verdict) for x in lines] == [
        ("CPU, classifier", "6.20 ms/frame", "<= 6.10 ms/frame", "NOT MET"),
        ("CPU, camera", "1.40 ms/frame", "<= 1.50 ms/frame", "met"),
        ("CPU, core", "48.00 us/message", "<= 50.00 us/message", "met"),
    ]


def test_a_benchmark_that_did_not_run_is_not_met(tmp_path: Path) -> None:
    write(tmp_path, "pipeline.json", {"ratios": {"suite_over_bare": 1.0, "suite_over_sync": 2.0}})
    (tmp_path / "ipc.json").write_text("{truncated")
    lines = report.collect(tmp_path)
    missing = [x for x in lines if x.figure.startswith("not run")]
    assert [x.area for x in missing] == [
        "IPC",
        "classifier",
        "detector",
        "live view",
        "imprint",
        "multicamera",
    ]
    assert all(x.verdict == "NOT MET" for x in missing)
    assert "2 targets met, 6 NOT MET" in report.render(lines)
