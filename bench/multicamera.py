"""Multi-camera benchmark: 1, 2, 4 and 8 cameras in ONE CameraSource process, one classifier.

    python -m bench.multicamera [--cameras 1,2,4,8] [--seconds 8] [--warmup 3] [--threads N]
                                [--max-batch N]

For each camera count: a CameraSource process with that many synthetic cameras (640x480, each
``fps`` 0: offering frames as fast as its answers come back, so together they offer more than
the device can classify; ``maxInFlight`` 2 each, frames through each camera's shared-memory
ring) -> a fresh classifier process (the default model, ``tflite-int8``; ``--threads``, default
the classifier's ``threads: 0`` rule) on a :class:`CoreThread` IPC core -> results back at each
camera. Figures come from the camera's own status reports (one section per camera) over the
measured window. Baseline, measured in the same run: the bare backend loop (``infer`` on
preprocessed tensors, same thread count), batched the way the classifier batches when the
backend has ``infer_batch`` and the classifier's configuration batches (``maxBatch`` > 1;
``--max-batch`` sets it), else one at a time.

The cameras share ``maxInFlightTotal`` (default here: 2 x the classifier's batch): with more
cameras than the classifier keeps up with, that keeps each answer as fresh as with one camera
(``--max-in-flight-total 0``: each camera only its own limit, and latency grows with the count).

Targets (per camera count; the last two compare 8 cameras with 1):

* aggregate results/s >= 0.9 x the bare backend loop;
* Jain's fairness index of the per-camera results/s >= 0.95, and no camera below 0.8 x its fair
  share (aggregate / cameras);
* p95 request->result latency (frame captured -> result at the camera) at 8 <= 3 x at 1;
* the classifier's RSS at 8 <= 1.2 x at 1 (one model, bounded queues). Measured without its
  RssShmem: the frame rings are the camera's shared memory (each camera its own ring; the
  classifier maps every one it reads, and each touched slot counts in its RSS too); the RSS with
  them is reported beside it, without a target.

Results: a table per camera count on stdout, ``build/bench/multicamera.json`` and
``build/bench/multicamera.md``; ``bench.report`` adds the rows (area ``multicamera``) to
REPORT.md. Needs the model store (``make models``; ``$GGV_MODEL_STORE`` overrides it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import _report
from bench.pipeline import (
    _loop_result,
    cpu_seconds,
    load_backend,
    recipe_defaults,
    statuses,
    stop_processes,
    wait_state,
)
from ggvision.testing.agent import AgentProcess
from ggvision.testing.harness import CoreThread, pubsub_policy

CAMERA = "com.custom.CameraSource"
CLASSIFIER = "com.custom.ImageClassifier"
STATUS = "local/status/com.custom.CameraSource"
MODEL_KEY = "tflite-int8"
FRAME = (640, 480)
COUNTS = (1, 2, 4, 8)
MAX_IN_FLIGHT = 2  # per camera
TARGET_BARE = 0.9
TARGET_JAIN = 0.95
TARGET_FAIR_SHARE = 0.8
TARGET_P95 = 3.0
TARGET_RSS = 1.2


# --- the baseline -------------------------------------------------------------------------------
def frames(n: int = 8) -> list[np.ndarray]:
    from ggvision_camera.sources.synthetic import pattern

    return [pattern(i * 7, *FRAME) for i in range(n)]


def bare_loop(
    backend: Any, pictures: list[np.ndarray], seconds: float, batch: int
) -> dict[str, Any]:
    """The backend alone on preprocessed tensors: ``infer``, or ``infer_batch`` of ``batch``
    tensors when the backend has it and ``batch`` > 1 (results counted one per tensor)."""
    from ggvision.serving.preprocess import preprocess

    tensors = [preprocess(f, backend.model.manifest) for f in pictures]
    infer_batch = getattr(backend, "infer_batch", None)
    if batch <= 1 or infer_batch is None:
        batch = 1

        def call(i: int) -> None:
            backend.infer(tensors[i % len(tensors)])
    else:

        def call(i: int) -> None:
            infer_batch([tensors[(i + k) % len(tensors)] for k in range(batch)])

    for i in range(4):
        call(i)  # warm
    times: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        call(len(times))
        times.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - start
    result = _loop_result(len(times) * batch, elapsed, times)
    result["batch"] = batch
    return result


def classifier_batch(cfg: dict[str, Any]) -> int:
    """The classifier's batch size for this configuration: 1 where it does not batch (before
    micro-batching exists its configuration has no ``max_batch``)."""
    from ggvision_classifier.config import ClassifierConfig

    return int(getattr(ClassifierConfig.from_raw(cfg), "max_batch", 1) or 1)


# --- one camera count ---------------------------------------------------------------------------
def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS, VmHWM (peak) and RssShmem (the shared memory it maps: the cameras' frame rings,
    counted in its RSS though the camera owns them) of a process, MB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return {k: int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM", "RssShmem")}


def camera_config(n: int, ring_dir: Path, total: int) -> dict[str, Any]:
    source = {"type": "synthetic", "width": FRAME[0], "height": FRAME[1]}
    return {
        **recipe_defaults(CAMERA),
        "cameras": [{"name": f"cam{i + 1}", "source": source} for i in range(n)],
        "fps": 0,
        "maxInFlight": MAX_IN_FLIGHT,
        "maxInFlightTotal": total,
        "ringDirectory": str(ring_dir),
        "statusIntervalSeconds": 1.0,
    }


def run_count(
    n: int,
    cls_cfg: dict[str, Any],
    ring_dir: Path,
    *,
    total: int,
    warmup: float,
    seconds: float,
    logs: Path,
) -> dict[str, Any]:
    """One camera count on its own IPC core (component states never carry over)."""
    with CoreThread() as core:
        listener = AgentProcess(
            core.component_env("bench.Listener", pubsub_policy(subscribe=[STATUS]))
        )
        try:
            sub = listener("subscribe", topic=STATUS)["sub"]
            cam_cfg = camera_config(n, ring_dir, total)
            return _measure(core, listener, sub, cls_cfg, cam_cfg, warmup, seconds, logs)
        finally:
            listener.close()


def _measure(
    core: CoreThread,
    listener: AgentProcess,
    sub: int,
    cls_cfg: dict[str, Any],
    cam_cfg: dict[str, Any],
    warmup: float,
    seconds: float,
    logs: Path,
) -> dict[str, Any]:
    logs.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        n = len(cam_cfg["cameras"])

        def start(
            component: str, module: str, cfg: dict[str, Any], timeout: float
        ) -> subprocess.Popen[bytes]:
            with (logs / f"multicamera-{module.removeprefix('ggvision_')}-{n}.log").open(
                "wb"
            ) as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", module],
                    env=core.component_env(component, configuration=cfg),
                    stdout=out,
                )
            procs.append(proc)
            wait_state(core, component, proc, timeout)
            return proc

        classifier = start(CLASSIFIER, "ggvision_classifier", cls_cfg, 60)
        start(CAMERA, "ggvision_camera", cam_cfg, 30)
        statuses(listener, sub, time.monotonic() + warmup)  # drained, not measured
        cpu0 = [cpu_seconds(p.pid) for p in procs]
        reports = statuses(listener, sub, time.monotonic() + seconds)
        cpu = [cpu_seconds(p.pid) - c for p, c in zip(procs, cpu0, strict=True)]
        memory = memory_mb(classifier.pid)
        stop_processes(*procs)
    finally:
        stop_processes(*procs)
    reports = [r for r in reports if r.get("state") != "stopped" and "cameras" in r]
    if len(reports) < 2:
        raise RuntimeError(f"{n} camera(s): fewer than two status reports in {seconds} s")
    first, last = reports[0], reports[-1]
    span = last["uptime_s"] - first["uptime_s"]
    per_camera = {
        name: (cam["ok"] - first["cameras"][name]["ok"]) / span
        for name, cam in last["cameras"].items()
    }
    rates = list(per_camera.values())
    total = sum(rates)
    fair = total / n
    return {
        "cameras": n,
        "seconds": round(span, 3),
        "results_per_s": total,
        "per_camera_results_per_s": per_camera,
        "jain": total**2 / (n * sum(r * r for r in rates)) if total else 0.0,
        "min_over_fair_share": min(rates) / fair if fair else 0.0,
        "p50_ms": last["latency_ms"].get("p50"),
        "p95_ms": last["latency_ms"].get("p95"),
        "errors": last["errors"],
        "dropped": last["dropped"],
        "classifier_rss_mb": memory["VmRSS"],
        "classifier_peak_rss_mb": memory["VmHWM"],
        "classifier_ring_mb": memory["RssShmem"],
        "classifier_own_rss_mb": memory["VmRSS"] - memory["RssShmem"],
        "cpu_ms_per_result": {
            "classifier": cpu[0] / max(total * span, 1) * 1000,
            "camera": cpu[1] / max(total * span, 1) * 1000,
        },
    }


# --- verdicts and the report -------------------------------------------------------------------
def verdicts(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per camera count: each figure's value, target and whether it is met."""
    bare = results["bare"]["fps"]
    runs = {r["cameras"]: r for r in results["runs"]}
    out: dict[str, dict[str, Any]] = {}
    for n, r in sorted(runs.items()):
        rows: dict[str, Any] = {
            "aggregate_over_bare": {
                "value": r["results_per_s"] / bare,
                "target": f">= {TARGET_BARE}",
                "met": r["results_per_s"] / bare >= TARGET_BARE,
            }
        }
        if n > 1:
            rows["jain"] = {
                "value": r["jain"],
                "target": f">= {TARGET_JAIN}",
                "met": r["jain"] >= TARGET_JAIN,
            }
            rows["min_over_fair_share"] = {
                "value": r["min_over_fair_share"],
                "target": f">= {TARGET_FAIR_SHARE}",
                "met": r["min_over_fair_share"] >= TARGET_FAIR_SHARE,
            }
        one = runs.get(1)
        if one is not None and n > 1:
            if r["p95_ms"] and one["p95_ms"]:
                ratio = r["p95_ms"] / one["p95_ms"]
                rows["p95_over_1"] = {
                    "value": ratio,
                    "target": f"<= {TARGET_P95}" if n == max(runs) else "-",
                    "met": ratio <= TARGET_P95 if n == max(runs) else None,
                }
            ratio = r["classifier_own_rss_mb"] / one["classifier_own_rss_mb"]
            rows["rss_over_1"] = {
                "value": ratio,
                "target": f"<= {TARGET_RSS}" if n == max(runs) else "-",
                "met": ratio <= TARGET_RSS if n == max(runs) else None,
            }
            rows["rss_with_rings_over_1"] = {
                "value": r["classifier_rss_mb"] / one["classifier_rss_mb"],
                "target": "-",
                "met": None,
            }
        out[str(n)] = rows
    return out


LABELS = {
    "aggregate_over_bare": "aggregate results/s / bare backend loop",
    "jain": "Jain's index of per-camera results/s",
    "min_over_fair_share": "slowest camera / fair share",
    "p95_over_1": "p95 latency / at 1 camera",
    "rss_over_1": "classifier RSS without the mapped frame rings / at 1 camera",
    "rss_with_rings_over_1": "classifier RSS with the rings / at 1 camera",
}


def table(results: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    b = results["bare"]
    for r, (n, rows) in zip(results["runs"], results["verdicts"].items(), strict=True):
        per = ", ".join(f"{v:.1f}" for v in r["per_camera_results_per_s"].values())
        lines += [
            f"### {n} camera{'s' if int(n) > 1 else ''}",
            "",
            f"aggregate {r['results_per_s']:.1f} results/s (bare loop {b['fps']:.1f}, batch "
            f"{b['batch']}); per camera: {per}; latency p50 {r['p50_ms']} ms, p95 "
            f"{r['p95_ms']} ms; classifier RSS {r['classifier_rss_mb']:.0f} MB, of which "
            f"{r['classifier_ring_mb']:.0f} MB the cameras' frame rings it maps "
            f"(peak {r['classifier_peak_rss_mb']:.0f} MB)",
            "",
        ]
        lines += _report.verdict_table(
            "figure",
            [(LABELS[k], f"{v['value']:.3f}", v["target"], v["met"]) for k, v in rows.items()],
        )
        lines.append("")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = _report.parser("python -m bench.multicamera", __doc__)
    parser.add_argument("--cameras", default=",".join(map(str, COUNTS)))
    parser.add_argument("--seconds", type=float, default=8.0, help="measured time per count")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=0, help="0: the classifier's auto rule")
    parser.add_argument("--max-batch", type=int, default=0, help="0: the classifier's default")
    parser.add_argument(
        "--max-in-flight-total",
        type=int,
        default=-1,
        help="the camera's maxInFlightTotal; default: 2 x the classifier's batch (what one "
        "camera keeps in flight, per batch slot); 0: no shared limit",
    )
    args = parser.parse_args(argv)
    counts = sorted({int(c) for c in args.cameras.split(",")})
    args.threads = _report.classifier_threads(args.threads)
    store = _report.model_store()
    if _report.missing_model(store, MODEL_KEY):
        return 2
    run = _report.Run()
    ring_dir = Path(tempfile.mkdtemp(prefix="ggv-bench-multicam-", dir="/dev/shm"))
    cls_cfg: dict[str, Any] = {
        **recipe_defaults(CLASSIFIER),
        "modelKey": MODEL_KEY,
        "modelStorePath": str(store),
        "threads": args.threads,
        "frameDirectory": str(ring_dir),
    }
    if args.max_batch:
        cls_cfg["maxBatch"] = args.max_batch
    batch = classifier_batch(cls_cfg)
    total = args.max_in_flight_total if args.max_in_flight_total >= 0 else MAX_IN_FLIGHT * batch
    backend = load_backend(store, args.threads)
    bare = bare_loop(backend, frames(), args.seconds, batch)
    backend.close()
    del backend
    runs = []
    try:
        for n in counts:
            print(f"[bench] {n} camera(s) ...", file=sys.stderr, flush=True)
            runs.append(
                run_count(
                    n,
                    cls_cfg,
                    ring_dir,
                    total=total,
                    warmup=args.warmup,
                    seconds=args.seconds,
                    logs=args.out / "logs",
                )
            )
    finally:
        for f in ring_dir.iterdir():
            f.unlink()
        ring_dir.rmdir()
    results: dict[str, Any] = {
        "bare": bare,
        "runs": runs,
        "setup": {
            "model": MODEL_KEY,
            "backend": "tflite",
            "threads": args.threads,
            "batch": batch,
            "frame_size": list(FRAME),
            "source": f"synthetic, fps 0, maxInFlight {MAX_IN_FLIGHT} per camera",
            "max_in_flight_total": total,
            "seconds": args.seconds,
            "warmup": args.warmup,
            **run.machine(),
        },
    }
    results["verdicts"] = verdicts(results)
    lines = table(results)
    notes = [
        f"{MODEL_KEY} on tflite, {args.threads} thread(s), classifier batch {batch}; "
        f"each camera maxInFlight {MAX_IN_FLIGHT}, all of them together maxInFlightTotal "
        f"{total or 'unlimited'}; "
        f"{FRAME[0]}x{FRAME[1]} synthetic frames; per camera count {args.warmup:g} s of warm-up, "
        f"then {args.seconds:g} s measured from the camera's status reports; a fresh classifier "
        "process per count (its RSS at the end of the window).",
        "Latency: frame captured -> its result received by the camera (p95 over each camera's "
        "last 1000 requests, all cameras together).",
        f"{os.cpu_count()} CPUs, 1-min load average {run.load_before:.2f} before the run; on a "
        "machine with few cores the camera process and the IPC core compete with inference.",
    ]
    title = "Multi-camera: N cameras in one CameraSource, one classifier"
    return _report.finish(args.out, "multicamera", title, results, lines, notes)


if __name__ == "__main__":
    raise SystemExit(main())
