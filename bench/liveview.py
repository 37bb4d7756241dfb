"""Live view benchmark: the CPU the live view takes with nobody watching and with one viewer.

    python -m bench.liveview [--seconds 10] [--warmup 3] [--fps 5]

The suite runs on a :class:`CoreThread` IPC core: a CameraSource process (a video of real photos
at the default camera rate, 5 fps, frames through the shared-memory ring) -> the classifier
(``tflite-int8``) -> the LiveView process (``python -m ggvision_liveview``), each with its
recipe's configuration. Two windows of ``--seconds`` each, measured on the live view's own
process (utime + stime from /proc):

* none: no viewer. Every request and answer is still decoded and counted (``/metrics``), but no
  frame is read from the ring nor encoded;
* one viewer: one client reads ``/events`` (as the page does), so every answered frame is read,
  annotated and JPEG-encoded once.

Targets: one viewer <= 10 % of one core; none <= 1 % (~0). Results: a table on stdout,
``build/bench/liveview.json`` and ``build/bench/liveview.md``. Needs the model store
(``make models``) and OpenCV for the video.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench import _report
from bench.pipeline import MODEL_KEY, cpu_seconds, recipe_defaults, stop_processes, wait_state
from ggvision.testing.harness import CoreThread
from tools.make_samples import FRAME_SIZE, photo_frames, write_video

REPO = _report.REPO
CAMERA = "com.custom.CameraSource"
CLASSIFIER = "com.custom.ImageClassifier"
LIVEVIEW = "com.custom.LiveView"
TARGET_ONE_VIEWER = 10.0  # % of one core
TARGET_NO_VIEWER = 1.0
FRAMES_PER_PHOTO = 10


class Viewer:
    """One client of ``/events``: counts the events and the pictures it receives."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.events = 0
        self.pictures = 0
        self.bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="viewer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        with urllib.request.urlopen(self.url, timeout=30) as r:
            while not self._stop.is_set():
                line = r.readline()
                if not line:
                    return
                if line.startswith(b"data: "):
                    self.events += 1
                    self.bytes += len(line)
                    self.pictures += b'"jpeg":' in line

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def window(pid: int, seconds: float) -> float:
    """CPU % of one core that ``pid`` used over ``seconds``."""
    before, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / (time.monotonic() - t0) * 100


def answered(url: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "ggvision_results_total"
    )


def suite(store: Path, video: Path, *, fps: float, warmup: float, seconds: float) -> dict[str, Any]:
    frames_dir = Path(tempfile.mkdtemp(prefix="ggv-bench-frames-", dir="/dev/shm"))
    logs = REPO / "build" / "bench" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    def start(name: str, module: str, cfg: dict[str, Any], log: str) -> subprocess.Popen[bytes]:
        with (logs / log).open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", module],
                env=core.component_env(name, configuration=cfg),
                stdout=out,
            )
        procs.append(proc)
        return proc

    try:
        with CoreThread() as core:
            classifier = start(
                CLASSIFIER,
                "ggvision_classifier",
                {
                    **recipe_defaults(CLASSIFIER),
                    "modelKey": MODEL_KEY,
                    "modelStorePath": str(store),
                    "threads": 0,
                    "frameDirectory": str(frames_dir),
                    "statusIntervalSeconds": 2.0,
                },
                "liveview-classifier.log",
            )
            wait_state(core, CLASSIFIER, classifier, 60)
            liveview = start(
                LIVEVIEW,
                "ggvision_liveview",
                {**recipe_defaults(LIVEVIEW), "port": port, "frameDirectory": str(frames_dir)},
                "liveview.log",
            )
            wait_state(core, LIVEVIEW, liveview, 30)
            camera = start(
                CAMERA,
                "ggvision_camera",
                {
                    **recipe_defaults(CAMERA),
                    "source": {"type": "video", "path": str(video)},
                    "fps": fps,
                    "ringDirectory": str(frames_dir),
                    "statusIntervalSeconds": 2.0,
                },
                "liveview-camera.log",
            )
            wait_state(core, CAMERA, camera, 30)
            time.sleep(warmup)
            n0 = answered(url)
            idle = window(liveview.pid, seconds)
            n1 = answered(url)
            viewer = Viewer(url + "/events")
            viewer.start()
            time.sleep(1.0)  # connected, first picture sent
            events0, pictures0 = viewer.events, viewer.pictures
            t0 = time.monotonic()
            watched = window(liveview.pid, seconds)
            span = time.monotonic() - t0
            n2 = answered(url)
            events, pictures = viewer.events - events0, viewer.pictures - pictures0
            viewer.stop()
            stop_processes(*procs)
    finally:
        stop_processes(*procs)
        for f in frames_dir.iterdir():
            f.unlink()
        frames_dir.rmdir()
    return {
        "none": {"cpu_percent": idle, "answers_per_s": (n1 - n0) / seconds},
        "one_viewer": {
            "cpu_percent": watched,
            "answers_per_s": (n2 - n1) / (seconds + 1.0),
            "events_per_s": events / span,
            "pictures_per_s": pictures / span,
            "mean_event_kb": viewer.bytes / max(viewer.events, 1) / 1024,
        },
    }


def table(results: dict[str, Any]) -> list[str]:
    none, one = results["none"], results["one_viewer"]
    return _report.verdict_table(
        "live view (CPU % of one core)",
        [
            (
                f"no viewer ({none['answers_per_s']:.1f} answers/s)",
                f"{none['cpu_percent']:.2f}",
                f"<= {TARGET_NO_VIEWER:g}",
                none["cpu_percent"] <= TARGET_NO_VIEWER,
            ),
            (
                f"one viewer ({one['pictures_per_s']:.1f} pictures/s)",
                f"{one['cpu_percent']:.2f}",
                f"<= {TARGET_ONE_VIEWER:g}",
                one["cpu_percent"] <= TARGET_ONE_VIEWER,
            ),
        ],
    )


def main(argv: list[str] | None = None) -> int:
    parser = _report.parser("python -m bench.liveview", __doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="each measured window")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--fps", type=float, default=5.0, help="camera rate (default: recipe's)")
    args = parser.parse_args(argv)
    store = _report.model_store()
    if _report.missing_model(store, MODEL_KEY):
        return 2
    run = _report.Run()
    with tempfile.TemporaryDirectory(prefix="ggv-bench-") as tmp:
        video = write_video(Path(tmp) / "photos.mp4", photo_frames(), FRAMES_PER_PHOTO)
        measured = suite(store, video, fps=args.fps, warmup=args.warmup, seconds=args.seconds)
    results: dict[str, Any] = {
        **measured,
        "targets": {"one_viewer_percent": TARGET_ONE_VIEWER, "none_percent": TARGET_NO_VIEWER},
        "setup": {
            "model": MODEL_KEY,
            "camera_fps": args.fps,
            "frame_size": list(FRAME_SIZE),
            "seconds": args.seconds,
            "warmup": args.warmup,
            **run.machine(),
        },
    }
    lines = table(results)
    notes = [
        "CPU of the live view process only (utime + stime), over each window.",
        "No viewer: requests and answers are decoded and counted, no frame is read or encoded.",
        "One viewer: each answered frame read from the ring, annotated and encoded once "
        f"(JPEG quality {recipe_defaults(LIVEVIEW)['jpegQuality']}), sent as an SSE event "
        f"of {results['one_viewer']['mean_event_kb']:.0f} KB on average.",
    ]
    return _report.finish(args.out, "liveview", "Live view CPU", results, lines, notes)


if __name__ == "__main__":
    raise SystemExit(main())
