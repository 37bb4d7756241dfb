"""The shared-memory frame ring: round trip, overwrite detection, hostile names and files."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ggvision.contract import FrameRef
from ggvision.frames import FrameError, FrameReader, FrameWriter, StaleFrame


@pytest.fixture
def shm_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="ggv-shm-") as d:
        yield Path(d)


def _frame(value: int, h: int = 48, w: int = 64) -> np.ndarray:
    f = np.full((h, w, 3), value, dtype=np.uint8)
    f[0, 0] = (1, 2, 3)
    return f


def test_frames_round_trip_by_reference(shm_dir: Path) -> None:
    writer = FrameWriter("ggv-test", slots=4, slot_bytes=64 * 48 * 3, directory=shm_dir)
    reader = FrameReader("ggv-test", directory=shm_dir)
    ref = writer.write(_frame(200))
    pixels, ts = reader.read(ref)
    assert ts > 0
    np.testing.assert_array_equal(pixels, _frame(200))
    assert (shm_dir / "ggv-test").stat().st_mode & 0o777 == 0o600
    writer.unlink()
    reader.close()


def test_an_overwritten_slot_is_reported_stale_not_torn(shm_dir: Path) -> None:
    writer = FrameWriter("ggv-test", slots=2, slot_bytes=64 * 48 * 3, directory=shm_dir)
    reader = FrameReader("ggv-test", directory=shm_dir)
    first = writer.write(_frame(10))
    writer.write(_frame(20))
    third = writer.write(_frame(30))  # lands in the first one's slot
    assert third.slot == first.slot
    with pytest.raises(StaleFrame):
        reader.read(first)
    np.testing.assert_array_equal(reader.read(third)[0], _frame(30))
    writer.unlink()


def test_a_slot_being_written_is_stale(shm_dir: Path) -> None:
    import struct

    writer = FrameWriter("ggv-test", slots=2, slot_bytes=64 * 48 * 3, directory=shm_dir)
    reader = FrameReader("ggv-test", directory=shm_dir)
    ref = writer.write(_frame(10))
    # Simulate the writer mid-copy: the seqlock number is odd.
    off = 64 + ref.slot * (64 + writer.slot_bytes)
    struct.pack_into("<Q", writer._mm, off, ref.seq + 1)
    with pytest.raises(StaleFrame):
        reader.read(ref)
    writer.unlink()


@pytest.mark.parametrize("name", ["../etc/passwd", ".hidden", "a/b", "", "x" * 65])
def test_bad_ring_names_are_refused(shm_dir: Path, name: str) -> None:
    with pytest.raises(FrameError):
        FrameReader(name, directory=shm_dir)


def test_missing_or_foreign_files_are_not_rings(shm_dir: Path) -> None:
    with pytest.raises(FrameError):
        FrameReader("nope", directory=shm_dir)
    (shm_dir / "foreign").write_bytes(b"\x00" * 4096)
    with pytest.raises(FrameError):
        FrameReader("foreign", directory=shm_dir)


def test_oversized_frames_and_bad_slots_are_errors(shm_dir: Path) -> None:
    writer = FrameWriter("ggv-test", slots=2, slot_bytes=16, directory=shm_dir)
    with pytest.raises(FrameError):
        writer.write(_frame(1))
    reader = FrameReader("ggv-test", directory=shm_dir)
    with pytest.raises(FrameError):
        reader.read(FrameRef(ring="ggv-test", slot=5, seq=2))
    writer.unlink()
