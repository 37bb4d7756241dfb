"""SIGTERM stops a component even when the kernel hands it to a thread other than the main one.

The signal is sent with tgkill(2) to one chosen non-main thread, which is what happens by chance
with ``kill`` on a process whose IPC client, capture and worker threads do not block signals.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="tgkill is Linux-only")

SYS_TGKILL = {"x86_64": 234, "aarch64": 131}.get(os.uname().machine)

CHILD = textwrap.dedent(
    """
    import sys, threading, time
    from ggvision.signals import StopSignals

    mode = sys.argv[1]
    if mode == "stop-signals":
        stop = StopSignals()
    else:  # the old way: an untimed Event.wait in the main thread
        import signal
        event = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: event.set())
    ready = threading.Event()

    def worker():
        print(threading.get_native_id(), flush=True)
        ready.set()
        time.sleep(60)

    threading.Thread(target=worker, daemon=True).start()
    ready.wait(5)
    if mode == "stop-signals":
        print("got", stop.wait(), flush=True)
    else:
        event.wait()
        print("got event", flush=True)
    """
)


def _tgkill(pid: int, tid: int, sig: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(SYS_TGKILL, pid, tid, sig) != 0:
        raise OSError(ctypes.get_errno(), "tgkill failed")


def _start(mode: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, mode], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    tid = int(proc.stdout.readline())
    assert tid != proc.pid  # a worker thread, not the main one
    time.sleep(0.3)  # the main thread is parked in its wait by now
    return proc, tid


@pytest.mark.skipif(SYS_TGKILL is None, reason="tgkill number unknown for this machine")
def test_sigterm_taken_by_a_worker_thread_still_stops_the_main_loop():
    proc, tid = _start("stop-signals")
    try:
        _tgkill(proc.pid, tid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=5)
    finally:
        proc.kill()
    assert out.strip() == f"got {int(signal.SIGTERM)}"
    assert proc.returncode == 0


@pytest.mark.skipif(SYS_TGKILL is None, reason="tgkill number unknown for this machine")
def test_control_untimed_event_wait_misses_it():
    """The failure this guards against is real: the old way does not wake up."""
    proc, tid = _start("event")
    try:
        _tgkill(proc.pid, tid, signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            proc.communicate(timeout=1.5)
    finally:
        proc.kill()
        proc.wait(5)


def test_a_signal_before_wait_is_kept():
    from ggvision.signals import StopSignals

    old = signal.getsignal(signal.SIGUSR1)
    try:
        stop = StopSignals(signals=(signal.SIGUSR1,))
        os.kill(os.getpid(), signal.SIGUSR1)
        started = time.monotonic()
        assert stop.wait(poll_s=0.01) == signal.SIGUSR1
        assert time.monotonic() - started < 1.0
    finally:
        signal.signal(signal.SIGUSR1, old)


def test_a_run_that_ends_by_itself_ends_the_wait_without_a_signal():
    import threading

    from ggvision.signals import StopSignals

    old = signal.getsignal(signal.SIGUSR1)
    try:
        stop = StopSignals(signals=(signal.SIGUSR1,))
        finished = threading.Event()
        threading.Timer(0.2, finished.set).start()
        started = time.monotonic()
        assert stop.wait(poll_s=5.0, until=finished) is None
        assert 0.15 < time.monotonic() - started < 2.0  # woken by the event, not the 5 s slice
        os.kill(os.getpid(), signal.SIGUSR1)
        assert stop.wait(poll_s=0.01, until=threading.Event()) == signal.SIGUSR1
    finally:
        signal.signal(signal.SIGUSR1, old)
