"""How frames travel: the shared-memory ring (read back, and stale once overwritten), inline JPEG
within the contract's 128 KB, and JPEG files of which only the last N are kept."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from ggvision_camera import transport
from ggvision_camera.config import CameraConfig
from ggvision_camera.errors import TransportError
from ggvision_camera.sources.synthetic import pattern, read_number
from PIL import Image

from ggvision.contract import (
    MAX_INLINE_IMAGE_BYTES,
    DataImage,
    FrameRef,
    inline_bytes,
    parse_request,
    request_json,
)
from ggvision.frames import FrameReader, StaleFrame
from tests.camera.conftest import photo


def noise(width: int, height: int, seed: int = 0) -> np.ndarray:
    """The worst case for JPEG: every pixel random."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_the_ring_hands_frames_by_reference_and_the_reader_sees_overwrites_as_stale(
    tmp_path: Path,
) -> None:
    cfg = CameraConfig(ring_directory=str(tmp_path), ring_slots=3, max_width=320, max_height=240)
    ring = transport.create(cfg)
    assert isinstance(ring, transport.RingTransport)
    reader = FrameReader(ring.name, directory=tmp_path)
    try:
        refs = [ring.image(pattern(n, 320, 240)).frame for n in range(3)]
        assert all(isinstance(ref, FrameRef) for ref in refs)
        for n, ref in enumerate(refs):
            pixels, _ = reader.read(ref)
            assert read_number(pixels) == n
        ring.image(pattern(3, 320, 240))  # the fourth frame takes the first frame's slot
        with pytest.raises(StaleFrame):
            reader.read(refs[0])
        assert read_number(reader.read(refs[1])[0]) == 1
        with pytest.raises(TransportError, match="exceeds the slot size"):
            ring.image(pattern(0, 640, 480))
    finally:
        reader.close()
        ring.close()
    assert not (tmp_path / ring.name).exists()


def test_the_ring_name_defaults_to_the_camera_and_the_process(tmp_path: Path) -> None:
    ring = transport.create(CameraConfig(camera_name="door", ring_directory=str(tmp_path)))
    try:
        assert isinstance(ring, transport.RingTransport)
        assert ring.name.startswith("ggv-door-") and ring.name.split("-")[-1].isdigit()
    finally:
        ring.close()


def test_a_ring_that_cannot_be_created_is_a_transport_error(tmp_path: Path) -> None:
    with pytest.raises(TransportError, match="cannot create frame ring"):
        transport.create(CameraConfig(ring_directory=str(tmp_path / "missing")))


def test_an_inline_photo_fits_at_the_configured_quality_without_resizing() -> None:
    frame = photo("astronaut")  # 512x512
    image = transport.create(CameraConfig(transport="inline", jpeg_quality=85)).image(frame)
    assert isinstance(image, DataImage)
    data = base64.b64decode(image.data)
    assert len(data) <= MAX_INLINE_IMAGE_BYTES
    assert Image.open(io.BytesIO(data)).size == (512, 512)


@pytest.mark.parametrize(
    ("width", "height", "resized"), [(640, 480, False), (1280, 720, True), (4000, 3000, True)]
)
def test_inline_jpeg_is_reencoded_smaller_until_it_fits_the_contract(
    width: int, height: int, resized: bool
) -> None:
    frame = noise(width, height)
    assert len(transport.jpeg(Image.fromarray(frame), 95)) > MAX_INLINE_IMAGE_BYTES
    image = transport.InlineJpegTransport(quality=95).image(frame)
    # What the classifier will do with it: the contract accepts it and it decodes.
    request = parse_request(request_json("x", image))
    assert isinstance(request.image, DataImage)
    data = inline_bytes(request.image)
    assert len(data) <= MAX_INLINE_IMAGE_BYTES
    decoded = Image.open(io.BytesIO(data))
    assert (decoded.width < width) == resized  # a lower quality first, then a smaller image
    assert abs(decoded.width / decoded.height - width / height) < 0.02  # aspect ratio kept


def test_jpeg_within_an_impossible_budget_is_a_transport_error() -> None:
    with pytest.raises(TransportError, match="within 100 bytes"):
        transport.jpeg_within(noise(64, 64), 100, 85)


def test_the_file_transport_keeps_only_the_last_files(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    cfg = CameraConfig(transport="file", file_directory=str(folder), file_keep=4)
    files = transport.create(cfg)
    paths = [Path(files.image(pattern(n, 160, 120)).path) for n in range(7)]
    assert all(p.is_absolute() for p in paths)
    assert sorted(folder.iterdir()) == paths[-4:]
    for n, path in enumerate(paths[-4:], start=3):
        with Image.open(path) as img:
            assert img.format == "JPEG"
            assert read_number(np.asarray(img)) == n
    files.close()
    assert list(folder.iterdir()) == []
