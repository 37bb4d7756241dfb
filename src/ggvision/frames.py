"""A ring of shared-memory frame slots: pixels travel by reference, only the slot goes on the bus.

The writer (CameraSource) owns a file under ``/dev/shm`` mapped into memory: a header and N
fixed-size slots. Each slot is guarded by a sequence number used as a seqlock: the writer makes
it odd while it writes pixels and even (a new value) when the frame is complete. A reader copies
the pixels and checks the number before and after; if the slot was overwritten (or is being
written) it gets :class:`StaleFrame` instead of torn pixels.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import re
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

from ggvision.contract import FramePlane, FrameRef
from ggvision.errors import GgvisionError

DEFAULT_DIR = Path("/dev/shm")  # noqa: S108 # POSIX shm, files created 0600 # nosec B108
MAGIC = b"GGVRING1"
_HEADER = struct.Struct("<8sII48x")  # magic, slots, slot_bytes -> 64 bytes
_SLOT = struct.Struct("<QIIIId")  # seq, width, height, channels, nbytes, timestamp -> 32 bytes
SLOT_HEADER_BYTES = 64
T = TypeVar("T")
_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$")


class FrameError(GgvisionError):
    """A frame ring cannot be created, opened or read."""


class StaleFrame(FrameError):
    """The slot no longer holds the referenced frame (overwritten, or being written)."""


def check_ring_name(name: str) -> str:
    if not _NAME.match(name):
        raise FrameError(f"bad frame ring name {name!r}")
    return name


class _Ring:
    def __init__(self, path: Path, mm: mmap.mmap, slots: int, slot_bytes: int) -> None:
        self.path = path
        self._mm = mm
        self.slots = slots
        self.slot_bytes = slot_bytes
        self._stride = SLOT_HEADER_BYTES + slot_bytes

    def _slot_offset(self, slot: int) -> int:
        return _HEADER.size + slot * self._stride

    def close(self) -> None:
        if not self._mm.closed:
            self._mm.close()


class FrameWriter(_Ring):
    """Creates the ring; single writer."""

    def __init__(
        self,
        name: str,
        *,
        slots: int = 8,
        slot_bytes: int = 1920 * 1080 * 3,
        directory: Path = DEFAULT_DIR,
    ) -> None:
        check_ring_name(name)
        if not 1 <= slots <= 4096 or slot_bytes <= 0:
            raise FrameError("slots must be 1..4096 and slot_bytes positive")
        path = Path(directory) / name
        size = _HEADER.size + slots * (SLOT_HEADER_BYTES + slot_bytes)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.ftruncate(fd, size)
            mm = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        super().__init__(path, mm, slots, slot_bytes)
        _HEADER.pack_into(mm, 0, MAGIC, slots, slot_bytes)
        self.name = name
        self._counter = 0

    def write(self, frame: np.ndarray) -> FrameRef:
        """Copy an HxWxC uint8 frame into the next slot; returns its reference."""
        if frame.dtype != np.uint8 or frame.ndim != 3:
            raise FrameError("frames must be HxWxC uint8 arrays")
        nbytes = frame.nbytes
        if nbytes > self.slot_bytes:
            raise FrameError(f"frame of {nbytes} bytes exceeds the slot size {self.slot_bytes}")
        slot = self._counter % self.slots
        self._counter += 1
        seq = self._counter * 2  # even: complete; odd: being written
        off = self._slot_offset(slot)
        mm = self._mm
        struct.pack_into("<Q", mm, off, seq - 1)
        data = np.ndarray((nbytes,), dtype=np.uint8, buffer=mm, offset=off + SLOT_HEADER_BYTES)
        data[:] = np.ascontiguousarray(frame).reshape(-1)
        h, w, c = frame.shape
        _SLOT.pack_into(mm, off, seq, w, h, c, nbytes, time.time())
        return FrameRef(ring=self.name, slot=slot, seq=seq)

    def unlink(self) -> None:
        self.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def frame_slot_bytes(directory: Path, name: str) -> int:
    """The pixel bytes of one slot of ring ``name`` (its header only is read); 0 when there is
    no such ring."""
    try:
        check_ring_name(name)
        fd = os.open(Path(directory) / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except (OSError, FrameError):
        return 0
    try:
        head = os.pread(fd, _HEADER.size, 0)
    except OSError:
        return 0
    finally:
        os.close(fd)
    if len(head) < _HEADER.size:
        return 0
    magic, _slots, slot_bytes = _HEADER.unpack_from(head, 0)
    return int(slot_bytes) if magic == MAGIC else 0


class FrameReader(_Ring):
    """Maps an existing ring read-only."""

    def __init__(self, name: str, *, directory: Path = DEFAULT_DIR) -> None:
        check_ring_name(name)
        path = Path(directory) / name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            raise FrameError(f"frame ring {name} is not available: {exc.strerror}") from exc
        try:
            size = os.fstat(fd).st_size
            if size < _HEADER.size:
                raise FrameError(f"frame ring {name} is truncated")
            mm = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        except BaseException:
            os.close(fd)
            raise
        magic, slots, slot_bytes = _HEADER.unpack_from(mm, 0)
        self._size = _HEADER.size + slots * (SLOT_HEADER_BYTES + slot_bytes)
        if magic != MAGIC or size < self._size:
            mm.close()
            os.close(fd)
            raise FrameError(f"{path} is not a frame ring")
        # Kept open: a writer that restarts truncates the same file, and touching a mapped page
        # past the new end would kill this process with SIGBUS; read() checks the size first.
        self._fd = fd
        super().__init__(path, mm, slots, slot_bytes)

    def close(self) -> None:
        super().close()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def read(self, ref: FrameRef | FramePlane) -> tuple[np.ndarray, float]:
        """A copy of the referenced frame and its capture time; :class:`StaleFrame` if gone."""
        return self.read_with(ref, np.copy)

    def read_with(
        self, ref: FrameRef | FramePlane, fn: Callable[[np.ndarray], T]
    ) -> tuple[T, float]:
        """``fn`` applied to a read-only view of the referenced frame's pixels (HxWxC) in the
        ring, and the capture time; ``fn``'s result (which must not keep the view) counts only
        when the slot still holds the frame afterwards, else :class:`StaleFrame`. A frame plane
        goes into a model's input tensor this way with one pass over its bytes."""
        pixels, ts = self._view(ref)
        out = fn(pixels)
        (after,) = struct.unpack_from("<Q", self._mm, self._slot_offset(ref.slot))
        if after != ref.seq:
            raise StaleFrame(f"slot {ref.slot} was overwritten while it was read")
        return out, ts

    def shape(self, ref: FrameRef | FramePlane) -> tuple[int, int, int]:
        """(height, width, channels) of the referenced frame (its slot header only is read)."""
        pixels, _ts = self._view(ref)
        h, w, c = pixels.shape
        return h, w, c

    def _view(self, ref: FrameRef | FramePlane) -> tuple[np.ndarray, float]:
        if ref.slot >= self.slots:
            raise FrameError(f"slot {ref.slot} out of range (ring has {self.slots})")
        if self._fd < 0 or os.fstat(self._fd).st_size < self._size:
            raise FrameError(f"frame ring {self.path.name} was truncated (its writer restarted)")
        off = self._slot_offset(ref.slot)
        seq, w, h, c, nbytes, ts = _SLOT.unpack_from(self._mm, off)
        if seq != ref.seq:
            raise StaleFrame(f"slot {ref.slot} holds seq {seq}, not {ref.seq}")
        if nbytes != w * h * c or nbytes > self.slot_bytes or c not in (1, 3, 4):
            raise FrameError(f"slot {ref.slot} has an inconsistent header")
        view = np.frombuffer(self._mm, dtype=np.uint8, count=nbytes, offset=off + SLOT_HEADER_BYTES)
        return view.reshape(h, w, c), ts
