"""``make run CAMERAS=N``: turn the local run's single CameraSource camera into N sample cameras.

    python tools/run_cameras.py RUN_CONFIG N SAMPLES

Rewrites RUN_CONFIG (the deployment document ``make run`` applies, already filled in) in place:
CameraSource gets ``cameras``, a list of N cameras named ``cam-1`` ... ``cam-N``, taking turns
through four sample streams made from ``make samples``: the video at 15 fps, the folder of photos
at 2 fps, the video's centre (a region of interest) at 15 fps and the video at 5 fps. Every
other key is kept. Each camera is the ``source`` of its requests, so the result printer and the
live view show whose each result is.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

CAMERA = "com.custom.CameraSource"


def streams(samples: Path) -> list[dict[str, Any]]:
    video = {"type": "video", "path": str(samples / "video.mp4")}
    return [
        {"source": video, "fps": 15},
        {"source": {"type": "folder", "path": str(samples / "images")}, "fps": 2},
        {"source": video, "fps": 15, "roi": {"x": 0.25, "y": 0.25, "width": 0.5, "height": 0.5}},
        {"source": video, "fps": 5},
    ]


def cameras(n: int, samples: Path) -> list[dict[str, Any]]:
    kinds = streams(samples)
    return [{"name": f"cam-{i + 1}", **kinds[i % len(kinds)]} for i in range(n)]


def main(argv: list[str]) -> int:
    if len(argv) != 3 or not argv[1].isdigit() or not 1 <= int(argv[1]) <= 64:
        print("usage: run_cameras.py RUN_CONFIG N(1..64) SAMPLES", file=sys.stderr)
        return 2
    path, n, samples = Path(argv[0]), int(argv[1]), Path(argv[2])
    doc = json.loads(path.read_text())
    camera = doc.setdefault(CAMERA, {})
    camera["MERGE"] = {**camera.get("MERGE", {}), "cameras": cameras(n, samples)}
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
