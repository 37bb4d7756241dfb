"""Each frame source against real media: videos written by OpenCV from sample photos, a folder of
JPEG/PNG files, an HTTP stream of a video, the synthetic pattern. There is no camera device here:
the V4L2 class is driven up to the OpenCV boundary by opening a real video file through it."""

from __future__ import annotations

import functools
import http.server
import importlib.util
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from ggvision_camera import sources
from ggvision_camera.config import (
    SOURCE_TYPES,
    ImageFolderSource,
    PiCameraSource,
    StreamSource,
    SyntheticSource,
    V4L2Source,
    VideoFileSource,
)
from ggvision_camera.errors import SourceError, SourceUnavailable
from ggvision_camera.sources.base import FrameSource, as_rgb, fit, fitted_size
from ggvision_camera.sources.opencv import redact
from ggvision_camera.sources.synthetic import pattern, read_number

from tests.camera.conftest import (
    FRAMES_PER_PHOTO,
    VIDEO_PHOTOS,
    VIDEO_SIZE,
    photo,
    photo_video_frames,
)

VIDEO_LENGTH = len(VIDEO_PHOTOS) * FRAMES_PER_PHOTO


def make(config: object, max_width: int = 1280, max_height: int = 720) -> FrameSource:
    return sources.create(config, max_width=max_width, max_height=max_height)


def read(source: FrameSource, n: int) -> list[np.ndarray]:
    return [source.read() for _ in range(n)]


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_the_registry_covers_exactly_the_configured_source_types() -> None:
    assert set(sources.REGISTRY) == SOURCE_TYPES


def test_opencv_and_picamera2_are_imported_only_when_a_source_opens() -> None:
    code = (
        "import sys, ggvision_camera.app, ggvision_camera.sources.opencv, "
        "ggvision_camera.sources.picamera; "
        "assert 'cv2' not in sys.modules and 'picamera2' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- synthetic ---------------------------------------------------------------------------------
def test_the_synthetic_pattern_is_deterministic_and_moves() -> None:
    config = SyntheticSource(width=160, height=120)
    with make(config) as a, make(config) as b:
        first, second = read(a, 5), read(b, 5)
    for x, y in zip(first, second, strict=True):
        assert x.shape == (120, 160, 3) and x.dtype == np.uint8
        np.testing.assert_array_equal(x, y)
    assert all(mean_abs_diff(first[i], first[i + 1]) > 1 for i in range(4))
    np.testing.assert_array_equal(first[3], pattern(3, 160, 120))


@pytest.mark.parametrize(("width", "height"), [(160, 120), (640, 480), (1920, 1080)])
def test_the_synthetic_pattern_shows_a_readable_frame_counter(width: int, height: int) -> None:
    with make(SyntheticSource(width=width, height=height), 4096, 4096) as src:
        numbers = [read_number(frame) for frame in read(src, 12)]
    assert numbers == list(range(12))
    assert read_number(pattern(4321, width, height)) == 4321


def test_frames_larger_than_the_maximum_are_scaled_down_keeping_the_aspect_ratio() -> None:
    with make(SyntheticSource(width=1920, height=1080), max_width=640, max_height=480) as src:
        frame = src.read()
    assert frame.shape == (360, 640, 3)
    assert fitted_size(300, 200, 640, 480) == (300, 200)  # never scaled up
    assert fitted_size(1000, 3000, 640, 480) == (160, 480)


def test_grey_and_alpha_frames_become_rgb() -> None:
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    rgb = as_rgb(grey)
    assert rgb.shape == (3, 4, 3) and (rgb[:, :, 0] == grey).all() and (rgb[:, :, 2] == grey).all()
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    assert as_rgb(rgba).shape == (2, 2, 3)
    with pytest.raises(SourceError, match="shape"):
        as_rgb(np.zeros((2, 2, 2), dtype=np.uint8))
    with pytest.raises(SourceError, match="uint8"):
        as_rgb(np.zeros((2, 2, 3), dtype=np.float32))
    assert fit(rgb, 2, 2).shape == (2, 2, 3)


# --- video files ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["photos.mp4", "photos.avi"])
def test_a_video_file_plays_its_photos_in_rgb_and_loops(media: Path, name: str) -> None:
    with make(VideoFileSource(path=str(media / name))) as src:
        assert not src.live
        frames = read(src, 2 * VIDEO_LENGTH + 1)
    expected = photo_video_frames()
    for i, frame in enumerate(frames):
        want = expected[i % VIDEO_LENGTH]
        assert frame.shape == (VIDEO_SIZE[1], VIDEO_SIZE[0], 3)
        # Lossy, but close; with red and blue swapped (BGR) it would be far off.
        assert mean_abs_diff(frame, want) < 8, i
        assert mean_abs_diff(frame[:, :, ::-1], want) > 2 * mean_abs_diff(frame, want)
    # The second pass decodes the same pixels as the first.
    for i in range(VIDEO_LENGTH):
        np.testing.assert_array_equal(frames[i], frames[i + VIDEO_LENGTH])


def test_a_missing_video_file_is_unavailable(tmp_path: Path) -> None:
    src = make(VideoFileSource(path=str(tmp_path / "nope.mp4")))
    with pytest.raises(SourceUnavailable, match="no such video file"):
        src.open()
    assert not src.is_open


def test_a_corrupt_video_file_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video at all" * 10)
    src = make(VideoFileSource(path=str(path)))
    with pytest.raises(SourceUnavailable):
        src.open()
        src.read()


def test_reading_before_open_is_an_error(media: Path) -> None:
    with pytest.raises(SourceError, match="before open"):
        make(VideoFileSource(path=str(media / "photos.mp4"))).read()


# --- V4L2 (through the same OpenCV capture class) ------------------------------------------------
def test_the_v4l2_source_reads_a_real_video_file_up_to_the_opencv_boundary(media: Path) -> None:
    config = V4L2Source(device=str(media / "photos.avi"), api="any", width=640, height=480, fps=30)
    with make(config) as camera, make(VideoFileSource(path=str(media / "photos.avi"))) as video:
        assert camera.live
        got, want = read(camera, VIDEO_LENGTH), read(video, VIDEO_LENGTH)
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)
        # A camera has no end: no frame means the camera is gone.
        with pytest.raises(SourceUnavailable, match="returned no frame"):
            camera.read()


@pytest.mark.parametrize(("device", "path"), [(77, "/dev/video77"), ("/dev/video77", None)])
def test_a_missing_v4l2_device_is_unavailable(device: int | str, path: str | None) -> None:
    src = make(V4L2Source(device=device))
    assert src.describe() == "camera /dev/video77"
    with pytest.raises(SourceUnavailable, match="no such device: /dev/video77"):
        src.open()


def test_a_path_that_is_not_a_camera_is_unavailable_through_the_v4l2_api(tmp_path: Path) -> None:
    not_a_camera = tmp_path / "video0"
    not_a_camera.write_bytes(b"plain file")
    with pytest.raises(SourceUnavailable, match="OpenCV cannot open"):
        make(V4L2Source(device=str(not_a_camera))).open()


# --- streams ---------------------------------------------------------------------------------
@pytest.fixture
def http_media(media: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(media))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_an_http_stream_is_read_through_ffmpeg_and_ends_as_unavailable(
    http_media: str, media: Path
) -> None:
    stream = make(StreamSource(url=f"{http_media}/photos.avi", open_timeout_seconds=5))
    with stream, make(VideoFileSource(path=str(media / "photos.avi"))) as video:
        assert stream.live
        for a, b in zip(read(stream, VIDEO_LENGTH), read(video, VIDEO_LENGTH), strict=True):
            np.testing.assert_array_equal(a, b)
        with pytest.raises(SourceUnavailable):
            stream.read()


def test_an_unreachable_stream_is_unavailable(http_media: str) -> None:
    with pytest.raises(SourceUnavailable, match="cannot open stream"):
        make(StreamSource(url=f"{http_media}/missing.avi", open_timeout_seconds=2)).open()


def test_stream_credentials_never_reach_the_logs() -> None:
    assert redact("rtsp://admin:secret@10.0.0.5:554/live") == "rtsp://***@10.0.0.5:554/live"
    assert redact("http://cam.local/mjpg") == "http://cam.local/mjpg"
    src = make(StreamSource(url="rtsp://admin:secret@10.0.0.5/live"))
    assert "secret" not in src.describe()


# --- image folders -------------------------------------------------------------------------------
def test_an_image_folder_plays_in_name_order_skips_bad_files_once_and_loops(
    image_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ggvision_camera")
    with make(ImageFolderSource(path=str(image_folder))) as src:
        frames = read(src, 7)
    chelsea, coffee, astronaut = photo("chelsea"), photo("coffee"), photo("astronaut")
    order = [chelsea, coffee, astronaut] * 3
    for frame, want in zip(frames, order, strict=False):
        assert frame.shape == want.shape
        assert mean_abs_diff(frame, want) < 3
    np.testing.assert_array_equal(frames[1], coffee)  # PNG: lossless
    skipped = [r for r in caplog.records if getattr(r, "event", "") == "camera.folder.skipped"]
    assert sorted(Path(vars(r)["file"]).name for r in skipped) == ["c_broken.jpg", "notes.txt"]


@pytest.mark.parametrize("content", ["missing", "empty", "undecodable"])
def test_a_folder_without_usable_images_is_unavailable(tmp_path: Path, content: str) -> None:
    folder = tmp_path / "images"
    if content != "missing":
        folder.mkdir()
    if content == "undecodable":
        (folder / "a.jpg").write_bytes(b"garbage")
    src = make(ImageFolderSource(path=str(folder)))
    with pytest.raises(SourceUnavailable):
        src.open()
        src.read()


# --- picamera2 ---------------------------------------------------------------------------------
@pytest.mark.skipif(
    importlib.util.find_spec("picamera2") is not None, reason="picamera2 is installed here"
)
def test_picamera2_without_the_package_is_a_clear_error_not_an_outage() -> None:
    src = make(PiCameraSource())
    with pytest.raises(SourceError) as info:
        src.open()
    assert not isinstance(info.value, SourceUnavailable)
    assert "needs picamera2 (Raspberry Pi OS: apt install python3-picamera2)" in str(info.value)
