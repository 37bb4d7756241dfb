"""Sample media for ``make run`` and the benchmarks, made from scikit-image's bundled photos.

Writes, under the output folder (default ``build/samples``):

    images/<name>.jpg   each photo as a JPEG (what the requester sends, by path)
    video.mp4           every photo, centre-cropped to 4:3 at 640x480, held for a few frames,
                        as an MPEG-4 video written by OpenCV (what CameraSource plays in a loop)

Nothing is downloaded: the photos ship inside the scikit-image wheel.

Usage: python tools/make_samples.py [OUT] [--frames-per-photo N] [--fps F]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "stereo_motorcycle")
FRAME_SIZE = (640, 480)


def photo(name: str) -> np.ndarray:
    """One of scikit-image's sample photos as RGB uint8 (the left view of the stereo pair)."""
    import skimage.data

    loaded = getattr(skimage.data, name)()
    pixels = np.asarray(loaded[0] if name == "stereo_motorcycle" else loaded)
    if pixels.ndim == 2:
        pixels = np.stack([pixels] * 3, axis=-1)
    return np.ascontiguousarray(pixels[:, :, :3])


def photo_frames(
    names: tuple[str, ...] = PHOTOS, size: tuple[int, int] = FRAME_SIZE
) -> list[np.ndarray]:
    """Each photo centre-cropped to the aspect of ``size`` and resized to it (bicubic), RGB."""
    from PIL import Image

    frames = []
    for name in names:
        pixels = photo(name)
        h, w = pixels.shape[:2]
        cw, ch = min(w, h * size[0] // size[1]), min(h, w * size[1] // size[0])
        top, left = (h - ch) // 2, (w - cw) // 2
        crop = Image.fromarray(pixels[top : top + ch, left : left + cw])
        frames.append(np.asarray(crop.resize(size, Image.Resampling.BICUBIC)))
    return frames


def write_video(path: Path, frames: list[np.ndarray], repeat: int = 6, fps: float = 30) -> Path:
    """Write ``frames`` (RGB, all one size), each ``repeat`` times, as MPEG-4 (OpenCV's mp4v)."""
    import cv2

    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    try:
        for frame in frames:
            bgr = np.ascontiguousarray(frame[:, :, ::-1])
            for _ in range(repeat):
                writer.write(bgr)
    finally:
        writer.release()
    return path


def write_images(folder: Path, names: tuple[str, ...] = PHOTOS) -> list[Path]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = folder / f"{name}.jpg"
        Image.fromarray(photo(name)).save(path, quality=92)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", type=Path, default=Path("build/samples"))
    parser.add_argument("--frames-per-photo", type=int, default=15)
    parser.add_argument("--fps", type=float, default=30.0)
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    images = write_images(out / "images")
    video = write_video(out / "video.mp4", photo_frames(), args.frames_per_photo, args.fps)
    print(f"samples: {len(images)} photos in {out / 'images'}, video {video}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
