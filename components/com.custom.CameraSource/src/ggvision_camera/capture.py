"""The capture loop: one thread owns the source, keeps the pace, and reconnects a lost camera.

Pacing: a live source (a camera) is read continuously, so the frame handed on is always the
newest, and frames between two send times are skipped; a non-live source (file, folder,
pattern) is read only when a frame is due. With ``fps`` 0 a live source runs at its own rate and
a non-live one as fast as the consumer answers.

A source that fails to open or read is closed and opened again after an exponential back-off
(``initial`` doubling to ``maximum``); each state change is logged once, never once per frame.
While the camera is down, ``reason`` says why (the last error) and ``retry_in_s`` when it tries
again. A file or folder played once (``loop`` false) is ``ended``: it is looked at again with the
same back-off and played once more only when it has changed on disk.

One capture loop per camera, each on its own thread with its own back-off: a camera that
blocks in a read or waits to reconnect never holds up another.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

import numpy as np

from ggvision_camera.errors import SourceEnded, SourceError, SourceUnavailable
from ggvision_camera.sources.base import FrameSource

log = logging.getLogger(__name__)

STARTING, STREAMING, RECONNECTING, FAILED, ENDED, STOPPED = (
    "starting",
    "streaming",
    "reconnecting",
    "failed",
    "ended",
    "stopped",
)
DOWN = frozenset({RECONNECTING, FAILED, ENDED})


class Sink(Protocol):
    def offer(self, frame: np.ndarray, index: int, captured_at: float) -> bool: ...
    def wait_for_room(self, timeout: float) -> bool: ...


class Backoff:
    """Delays ``initial``, ``2 * initial``, ... capped at ``maximum``; :meth:`reset` restarts."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self._next = initial

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.maximum)
        return delay

    def reset(self) -> None:
        self._next = self.initial


class Capture:
    def __init__(
        self,
        source: FrameSource,
        sink: Sink,
        *,
        fps: float,
        backoff: Backoff,
        name: str = "camera",
    ) -> None:
        self.name = name
        self.source = source
        self.sink = sink
        self.fps = fps
        self.backoff = backoff
        self.state = STARTING
        self.captured = 0
        self.skipped = 0
        self.reconnects = 0
        self.reason = ""  # why the camera is down (empty while streaming)
        self._retry_at: float | None = None  # monotonic time of the next attempt while down
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error_logged = False

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"camera-capture-{self.name}", daemon=True
        )
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the loop to stop, without waiting (stopping several cameras together)."""
        self._stop.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning(
                    "the capture thread is still blocked in %s",
                    self.source.describe(),
                    extra={"event": "camera.stop_timeout"},
                )

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def retry_in_s(self) -> float | None:
        """Seconds until the next attempt to open the source while it is down, else None."""
        at = self._retry_at
        return None if at is None else round(max(0.0, at - time.monotonic()), 3)

    # --- the loop --------------------------------------------------------------------------------
    def _run(self) -> None:
        period = 1.0 / self.fps if self.fps > 0 else 0.0
        due = time.monotonic()
        live = self.source.live
        try:
            while not self._stop.is_set():
                if not self.source.is_open and not self._connect():
                    continue
                if not live:
                    if period and not self._sleep_until(due):
                        break
                    if not period and not self.sink.wait_for_room(0.2):
                        continue
                frame = self._read()
                if frame is None:
                    continue
                if self.state != STREAMING:
                    self._streaming()
                now = time.monotonic()
                self.captured += 1
                if period:
                    if live and now < due:
                        self.skipped += 1
                        continue
                    # The next send time; after a stall, restart the schedule instead of bursting.
                    due = due + period if now - due < period else now + period
                self._offer(frame, now)
        finally:
            self.source.close()
            self._set_state(STOPPED, "stopped")

    def _connect(self) -> bool:
        try:
            self.source.open()
        except SourceEnded as exc:
            self._retry_later(ENDED, exc, self.backoff.next())
            return False
        except SourceUnavailable as exc:
            self._retry_later(RECONNECTING, exc, self.backoff.next())
            return False
        except SourceError as exc:
            self._retry_later(FAILED, exc, self.backoff.maximum)
            return False
        except Exception as exc:  # boundary: an unexpected failure is one more outage
            self._retry_later(RECONNECTING, exc, self.backoff.next(), unexpected=True)
            return False
        return True

    def _streaming(self) -> None:
        """The first frame after (re)connecting: only now is the outage over (a file that opens
        but has no readable frame keeps backing off)."""
        if self.state in (RECONNECTING, FAILED):
            self.reconnects += 1
        self.backoff.reset()
        self._error_logged = False
        self.reason = ""
        self._set_state(STREAMING, f"streaming from {self.source.describe()}")

    def _read(self) -> np.ndarray | None:
        try:
            return self.source.read()
        except SourceEnded as exc:
            self.source.close()
            self._retry_later(ENDED, exc, self.backoff.next())
        except SourceUnavailable as exc:
            self.source.close()
            self._retry_later(RECONNECTING, exc, self.backoff.next())
        except SourceError as exc:
            self.source.close()
            self._retry_later(FAILED, exc, self.backoff.maximum)
        except Exception as exc:  # boundary
            self.source.close()
            self._retry_later(RECONNECTING, exc, self.backoff.next(), unexpected=True)
        return None

    def _offer(self, frame: np.ndarray, now: float) -> None:
        try:
            self.sink.offer(frame, self.captured, now)
        except Exception:  # boundary: one bad frame never stops the camera
            log.exception("handing on a frame failed", extra={"event": "camera.offer_error"})

    def _retry_later(
        self, state: str, exc: BaseException, delay: float, *, unexpected: bool = False
    ) -> None:
        if state != self.state:
            level = logging.ERROR if state == FAILED or unexpected else logging.WARNING
            log.log(
                level,
                "%s: %s; %s",
                self.source.describe(),
                exc,
                "looking again with back-off" if state == ENDED else "retrying with back-off",
                exc_info=unexpected and not self._error_logged,
                extra={
                    "event": f"camera.{state}",
                    "source": self.source.type,
                    "camera": self.name,
                },
            )
            self._error_logged = self._error_logged or unexpected
        self.state = state
        self.reason = str(exc) or type(exc).__name__
        log.debug(
            "next attempt in %.3g s",
            delay,
            extra={"event": "camera.reconnect_wait", "delay_s": delay, "reason": str(exc)},
        )
        self._retry_at = time.monotonic() + delay
        self._stop.wait(delay)
        self._retry_at = None

    def _sleep_until(self, due: float) -> bool:
        """False when stopped while waiting."""
        delay = due - time.monotonic()
        return not (delay > 0 and self._stop.wait(delay))

    def _set_state(self, state: str, message: str) -> None:
        if state != self.state:
            self.state = state
            log.info(
                "%s",
                message,
                extra={"event": f"camera.{state}", "source": self.source.type, "camera": self.name},
            )
