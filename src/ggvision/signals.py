"""Stop a long-running component on SIGTERM/SIGINT, whichever thread the kernel picks.

A signal sent to a process goes to any one of its threads that does not block it: the IPC
client's event-loop threads, capture or worker threads.  CPython's C handler only notes it; the
Python handler runs in the *main* thread, the next time that thread executes bytecode.  A main
thread parked in an untimed ``threading.Event().wait()`` is not woken when another thread took
the signal, so the component ignores ``kill`` until something else wakes it (seen: a camera that
ran on for ten minutes after SIGTERM, until a second SIGTERM happened to reach the main thread).

:class:`StopSignals` installs the handlers and :meth:`StopSignals.wait` waits in short slices.
The handler only stores the signal number: no lock that the interrupted main thread may hold.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterable

POLL_S = 0.2


class StopSignals:
    """Install at start-up (a signal during start-up is kept), then :meth:`wait`."""

    def __init__(self, signals: Iterable[int] = (signal.SIGTERM, signal.SIGINT)) -> None:
        self.received: int | None = None
        for sig in signals:
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        if self.received is None:
            self.received = signum

    def wait(self, poll_s: float = POLL_S, until: threading.Event | None = None) -> int | None:
        """Block until one of the signals arrived (returns its number) or ``until`` is set (a
        run that ended by itself: returns None)."""
        while self.received is None:
            if until is None:
                time.sleep(poll_s)
            elif until.wait(poll_s):
                return self.received
        return self.received
