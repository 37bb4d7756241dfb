"""Detector benchmark: every detection variant bare and through IPC, and the camera -> detector
pipeline against the bare detect loop, measured in the same run.

For each variant of the detection model store (``build/detect-store/index.json``,
``$GGV_DETECT_STORE`` overrides) on its default backend:

* **bare**: ms per inference (every output) on a preprocessed tensor at 1 and 2 threads, the
  in-process cost of the rest of a request (read + decode + the task's prepare: EXIF, fit,
  normalise/quantize) and of the answer (decode of the outputs, NMS, boxes to the original
  image): the table of runtimes and precisions;
* **through IPC**: the ``com.custom.ObjectDetector`` process on ``ggvision core`` (``--threads``;
  default: the component's ``threads: 0`` rule) answering requests by path on ``local/detect``
  sent one at a time by a real ``GreengrassCoreIPCClientV2`` process; overhead = median over
  requests of (round trip - the same work done in-process just before it by the requester), as
  the classifier benchmark measures it. Target: the classifier's floor, <= 2 x the real clients'
  publish->event median + 0.3 ms for every variant, that median measured in the same run
  (:func:`bench.classifier.measure_floor`).

Pipeline (the default variant, the store's ``default``): a CameraSource process (video of real
photos, ``fps`` 0, ``tasks: [detect]``, frames through the shared-memory ring) -> the detector
-> results back at the camera, answers per second from the camera's status, against the bare
detect loop (``infer_all`` over preprocessed tensors of the same frames, same threads).
Target: suite / bare >= 0.9.

Usage: python -m bench.detector [--variants V ...] [--ipc-variants V ...] [--requests N]
[--seconds S] [--threads T] [--out DIR]. Writes DIR/detector.json and DIR/detector.md.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import _report
from bench.classifier import _median_ms, _rss_mb, floor_target, measure_floor
from bench.pipeline import cpu_seconds, recipe_defaults, statuses, stop_processes, wait_state
from ggvision.testing.agent import AgentProcess
from ggvision.testing.harness import CoreThread, pubsub_policy
from tools.make_samples import FRAME_SIZE, PHOTOS, photo_frames, write_images, write_video

REPO = _report.REPO
DETECTOR = "com.custom.ObjectDetector"
CAMERA = "com.custom.CameraSource"
STATUS = f"local/status/{CAMERA}"
REQUESTS = "local/detect"
PHOTO = "astronaut"
FRAMES_PER_PHOTO = 6
TARGET_PIPELINE = 0.9


def detect_store() -> Path:
    env = os.environ.get("GGV_DETECT_STORE")
    return Path(env) if env else REPO / "build" / "detect-store"


def _load(store: Path, variant: str, threads: int) -> tuple[Any, Any, Any]:
    from ggvision.serving.models import backends
    from ggvision.serving.models.store import DEFAULT_BACKEND, Model, resolve_model_dir
    from ggvision.serving.tasks import get_task

    model = Model.load(resolve_model_dir(store, variant))
    engine = backends.create(DEFAULT_BACKEND[model.manifest.format], model, threads=threads)
    engine.load()
    return model, engine, get_task(model.manifest.task)


def bare(store: Path, variant: str, image: Path, seconds: float) -> dict[str, Any]:
    from ggvision.serving.preprocess import decode

    out: dict[str, Any] = {}
    for threads in (1, 2):
        model, engine, task = _load(store, variant, threads)
        try:
            tensor, context = task.prepare(decode(image.read_bytes()), model)
            out[f"infer_ms_{threads}t"] = _median_ms(
                lambda e=engine, t=tensor: e.infer_all(t), seconds
            )
            outputs = engine.infer_all(tensor)
        finally:
            engine.close()
    manifest = model.manifest
    out.update(backend=engine.name, format=manifest.format, precision=manifest.precision)
    out["input"] = "x".join(str(d) for d in manifest.input.shape[1:3]) + f" {manifest.input.dtype}"
    out["prepare_ms"] = _median_ms(
        lambda: task.prepare(decode(image.read_bytes()), model), seconds / 2
    )
    out["answer_ms"] = _median_ms(
        lambda: task.answer(outputs, model, top_k=20, threshold=0.5, context=context), 0.3
    )
    found = task.answer(outputs, model, top_k=20, threshold=0.5, context=context).detections
    out["found"] = ", ".join(f"{d.label} {d.score:.2f}" for d in found or []) or "-"
    return out


def through_ipc(store: Path, variant: str, images: Path, n: int, threads: int) -> dict[str, Any]:
    """n sequential round trips (and RSS) of the detector process for one variant."""
    logs = REPO / "build" / "bench" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    config = {
        **recipe_defaults(DETECTOR),
        "modelKey": variant,
        "modelStorePath": str(store),
        "threads": threads,
        "allowedDirectories": [str(images)],
    }
    with CoreThread() as core:
        policy = pubsub_policy(publish=[REQUESTS], subscribe=["local/result"])
        client = subprocess.Popen(
            [sys.executable, "-m", "bench._e2e", str(images / f"{PHOTO}.jpg"), REQUESTS],
            env=core.component_env("bench.Requester", policy),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        assert client.stdin is not None and client.stdout is not None
        detector = None
        try:
            if not json.loads(client.stdout.readline()).get("ready"):
                raise RuntimeError("the bench requester did not start")
            with (logs / f"detector-{variant}.log").open("wb") as log:
                detector = subprocess.Popen(
                    [sys.executable, "-m", "ggvision_detector"],
                    env=core.component_env(DETECTOR, configuration=config),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            wait_state(core, DETECTOR, detector, 60)
            cmd = {"op": "run", "n": n, "store": str(store), "variant": variant, "threads": threads}
            client.stdin.write(json.dumps(cmd) + "\n")
            client.stdin.flush()
            run = json.loads(client.stdout.readline())
            if "error" in run:
                raise RuntimeError(run["error"])
            rss = _rss_mb(detector.pid)
        finally:
            client.stdin.close()
            client.wait(10)
            if detector is not None:
                stop_processes(detector)
    rtt, inproc = run["rtt_ms"], run["inprocess_ms"]
    return {
        "inprocess_ms": statistics.median(inproc),
        "overhead_ms": statistics.median(r - i for r, i in zip(rtt, inproc, strict=True)),
        "rtt_ms_p50": _report.percentile(rtt, 50),
        "rtt_ms_p95": _report.percentile(rtt, 95),
        "failed": run["failed"],
        "requests": len(rtt),
        "ipc_threads": threads,
        **rss,
    }


# --- the pipeline ---------------------------------------------------------------------------------
def bare_loop(store: Path, variant: str, frames: list[np.ndarray], threads: int, seconds: float):
    """``infer_all`` alone over preprocessed tensors of the frames: the most the model can do."""
    model, engine, task = _load(store, variant, threads)
    try:
        tensors = [task.prepare(f, model)[0] for f in frames]
        for t in tensors:
            engine.infer_all(t)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            engine.infer_all(tensors[n % len(tensors)])
            n += 1
        elapsed = time.perf_counter() - start
    finally:
        engine.close()
    return {"frames": n, "seconds": round(elapsed, 3), "fps": n / elapsed}


def pipeline(
    store: Path, variant: str, video: Path, *, threads: int, warmup: float, seconds: float
) -> dict[str, Any]:
    frames_dir = Path(tempfile.mkdtemp(prefix="ggv-bench-frames-", dir="/dev/shm"))
    logs = REPO / "build" / "bench" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with CoreThread() as core:
            listener = AgentProcess(
                core.component_env("bench.Listener", pubsub_policy(subscribe=[STATUS]))
            )
            sub = listener("subscribe", topic=STATUS)["sub"]
            det_cfg = {
                **recipe_defaults(DETECTOR),
                "modelKey": variant,
                "modelStorePath": str(store),
                "threads": threads,
                "frameDirectory": str(frames_dir),
            }
            with (logs / "detector-pipeline.log").open("wb") as out:
                detector = subprocess.Popen(
                    [sys.executable, "-m", "ggvision_detector"],
                    env=core.component_env(DETECTOR, configuration=det_cfg),
                    stdout=out,
                )
            procs.append(detector)
            wait_state(core, DETECTOR, detector, 60)
            cam_cfg = {
                **recipe_defaults(CAMERA),
                "source": {"type": "video", "path": str(video)},
                "fps": 0,
                "tasks": ["detect"],
                "maxInFlight": 2,
                "ringDirectory": str(frames_dir),
                "statusIntervalSeconds": 1.0,
            }
            with (logs / "camera-detect.log").open("wb") as out:
                camera = subprocess.Popen(
                    [sys.executable, "-m", "ggvision_camera"],
                    env=core.component_env(CAMERA, configuration=cam_cfg),
                    stdout=out,
                )
            procs.append(camera)
            wait_state(core, CAMERA, camera, 30)
            time.sleep(warmup)
            marks = [(cpu_seconds(p.pid), p.pid) for p in procs]
            reports = statuses(listener, sub, time.monotonic() + seconds)
            cpu = [cpu_seconds(pid) - before for before, pid in marks]
            listener.close()
            stop_processes(*procs)
    finally:
        stop_processes(*procs)
        for f in frames_dir.iterdir():
            f.unlink()
        frames_dir.rmdir()
    first, last = reports[0], reports[-1]
    span = last["running_s"] - first["running_s"]
    answered = last["answered"] - first["answered"]
    return {
        "frames": answered,
        "seconds": round(span, 3),
        "fps": answered / span,
        "p50_ms": last["latency_ms"].get("p50"),
        "p95_ms": last["latency_ms"].get("p95"),
        "errors": last["errors"],
        "lost": last["lost"],
        "cpu_ms_per_frame": {
            "detector": cpu[0] / max(answered, 1) * 1000,
            "camera": cpu[1] / max(answered, 1) * 1000,
        },
    }


# --- report ---------------------------------------------------------------------------------------
def evaluate(rows: dict[str, dict[str, Any]], floor_ms: float) -> None:
    for r in rows.values():
        if "rtt_ms_p50" not in r:
            continue
        model_ms = r["infer_ms_1t"] if r["ipc_threads"] == 1 else r["infer_ms_2t"]
        r["overhead_fraction"] = r["overhead_ms"] / model_ms
        r["overhead_met"] = r["overhead_ms"] <= floor_ms


def tables(doc: dict[str, Any]) -> list[str]:
    rows, pipe = doc["variants"], doc["pipeline"]
    lines = [
        "| variant | runtime | precision | input | infer 1t (ms) | infer 2t (ms) | prepare (ms)"
        " | answer (ms) | in-process (ms) | IPC p50 (ms) | overhead (ms) | overhead/model"
        " | target | peak RSS (MB) | found (astronaut, >= 0.5) |",
        "|" + " --- |" * 15,
    ]
    for v, r in rows.items():
        ipc = "rtt_ms_p50" in r
        lines.append(
            f"| {v} | {r['backend']} | {r['precision']} | {r['input']} | {r['infer_ms_1t']:.2f}"
            f" | {r['infer_ms_2t']:.2f} | {r['prepare_ms']:.2f} | {r['answer_ms']:.3f}"
            + (
                f" | {r['inprocess_ms']:.2f} | {r['rtt_ms_p50']:.2f} | {r['overhead_ms']:+.2f}"
                f" | {r['overhead_fraction'] * 100:+.1f} % | {_report.verdict(r['overhead_met'])}"
                f" | {r['peak_rss_mb']:.0f}"
                if ipc
                else " | - | - | - | - | - | -"
            )
            + f" | {r['found']} |"
        )
    figures = []
    if pipe:
        s, b = pipe["suite"], pipe["bare"]
        lines += [
            "",
            "| pipeline | frames/s | latency p50 (ms) | latency p95 (ms) |",
            "| --- | --- | --- | --- |",
            f"| camera -> IPC -> detector ({pipe['variant']}) -> camera | {s['fps']:.1f}"
            f" | {s['p50_ms'] or 0:.2f} | {s['p95_ms'] or 0:.2f} |",
            f"| bare detect loop (infer_all only, {pipe['threads']} threads) | {b['fps']:.1f}"
            " | - | - |",
        ]
        figures.append(
            (
                "pipeline / bare detect loop",
                f"{pipe['ratio']:.2f}",
                f">= {TARGET_PIPELINE}",
                pipe["ratio"] >= TARGET_PIPELINE,
            )
        )
    target = floor_target(doc["ipc_floor"]["publish_event_median_ms"])
    for v, r in rows.items():
        if "overhead_met" in r:
            figures.append(
                (f"IPC overhead {v}", f"{r['overhead_ms']:+.2f} ms", target, r["overhead_met"])
            )
    return [*lines, "", *_report.verdict_table("ratio / figure", figures)]


def main(argv: list[str] | None = None) -> int:
    parser = _report.parser("python -m bench.detector", __doc__)
    parser.add_argument("--variants", nargs="*", help="default: every variant of the store")
    parser.add_argument("--ipc-variants", nargs="*", help="through IPC (default: all measured)")
    parser.add_argument("--requests", type=int, default=40, help="round trips per variant")
    parser.add_argument("--threads", type=int, default=0, help="0: the detector's auto rule")
    parser.add_argument("--seconds", type=float, default=1.5, help="timed loop per measurement")
    parser.add_argument("--pipeline-seconds", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument(
        "--floor-messages", type=int, default=500, help="publish->event samples for the floor"
    )
    args = parser.parse_args(argv)
    store = detect_store().resolve()
    index_path = store / "index.json"
    if not index_path.is_file():
        print(f"no detection store at {store}: build it with `make models-detect`", file=sys.stderr)
        return 2
    index = json.loads(index_path.read_text())
    if args.threads == 0:
        from ggvision_detector.config import DetectorConfig

        args.threads = DetectorConfig(threads=0).inference_threads
    variants = args.variants or [v["variant"] for v in index["variants"]]
    ipc_variants = variants if args.ipc_variants is None else args.ipc_variants
    default = str(index.get("default") or variants[0])
    run = _report.Run()
    load_before = run.load_before
    rows: dict[str, dict[str, Any]] = {}
    floor = measure_floor(args.floor_messages)
    frames = photo_frames()
    with tempfile.TemporaryDirectory(prefix="ggv-bench-det-") as tmp:
        images = Path(tmp)
        write_images(images, (PHOTO,))
        for variant in variants:
            print(f"[bench] {variant}: bare…", end="", flush=True, file=sys.stderr)
            rows[variant] = bare(store, variant, images / f"{PHOTO}.jpg", args.seconds)
            if variant in ipc_variants:
                print(" through IPC…", end="", flush=True, file=sys.stderr)
                rows[variant].update(
                    through_ipc(store, variant, images, args.requests, args.threads)
                )
            print(" done", file=sys.stderr)
        print(f"[bench] pipeline ({default})…", file=sys.stderr)
        bare_fps = bare_loop(store, default, frames, args.threads, args.pipeline_seconds)
        video = write_video(images / "photos.mp4", frames, FRAMES_PER_PHOTO)
        suite = pipeline(
            store,
            default,
            video,
            threads=args.threads,
            warmup=args.warmup,
            seconds=args.pipeline_seconds,
        )
    evaluate(rows, floor["floor_ms"])
    doc: dict[str, Any] = {
        "setup": {"store": str(store), "threads": args.threads, **run.machine()},
        "variants": rows,
        "ipc_floor": floor,
        "pipeline": {
            "variant": default,
            "threads": args.threads,
            "suite": suite,
            "bare": bare_fps,
            "ratio": suite["fps"] / bare_fps["fps"],
        },
    }
    notes = [
        f"{os.cpu_count()} CPUs, load {load_before:.2f} before the run; photo {PHOTO}"
        f" (scikit-image) by path; {args.requests} sequential requests per variant through IPC"
        f" at {args.threads} thread(s); medians of timed loops of >= {args.seconds:g} s.",
        "prepare = read + decode + the detection task's prepare (EXIF, fit to the input,"
        " normalise/quantize); answer = outputs -> boxes (threshold, NMS when the manifest asks,"
        " boxes to the original image); in-process = prepare + inference + answer, done by the"
        " requester right before each IPC request; overhead = median of (IPC - in-process).",
        f"IPC floor: the real clients' publish->event median through the core, measured in this"
        f" run ({args.floor_messages} messages): {floor['publish_event_median_ms']:.3f} ms;"
        f" floor {floor['floor_ms']:.2f} ms.",
        f"Pipeline: {FRAME_SIZE[0]}x{FRAME_SIZE[1]} frames of {len(PHOTOS)} photos in an mp4v"
        f" video, CameraSource fps 0, maxInFlight 2, tasks [detect], the ring;"
        f" {args.pipeline_seconds:g} s measured after {args.warmup:g} s.",
    ]
    lines = tables(doc)
    doc["notes"] = notes
    title = "Detector: every variant, bare vs through IPC; camera -> detector pipeline"
    return _report.finish(args.out, "detector", title, doc, lines, notes)


if __name__ == "__main__":
    raise SystemExit(main())
