"""IpcBus callbacks over the real awsiotsdk client and ggvision core: inline handlers run on the
SDK's networking thread, the others on the bus's pool, and a slow pooled handler never holds up
the connection."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ggvision.bus import IpcBus
from ggvision.testing.harness import CoreThread, pubsub_policy


@pytest.fixture
def core() -> Iterator[CoreThread]:
    with CoreThread() as c:
        yield c


@pytest.fixture
def bus(core: CoreThread, monkeypatch: pytest.MonkeyPatch) -> Iterator[IpcBus]:
    topics = ["test/fast", "test/slow"]
    env = core.component_env("com.test.Bus", pubsub_policy(publish=topics, subscribe=topics))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    b = IpcBus()
    yield b
    b.close()


class Recorder:
    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.cond = threading.Condition()
        self.got: list[tuple[Any, str, float]] = []

    def __call__(self, topic: str, payload: bytes | dict[str, Any]) -> None:
        if self.delay_s:
            time.sleep(self.delay_s)
        with self.cond:
            self.got.append((payload, threading.current_thread().name, time.monotonic()))
            self.cond.notify_all()

    def wait(self, n: int, timeout: float = 5.0) -> list[tuple[Any, str, float]]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.got) >= n, timeout), self.got
            return list(self.got)


def test_inline_handler_runs_on_the_sdk_thread_and_others_on_the_pool(bus: IpcBus) -> None:
    fast, pooled = Recorder(), Recorder()
    bus.subscribe("test/fast", fast, inline=True)
    bus.subscribe("test/slow", pooled)
    bus.publish_bytes("test/fast", b"1").result(5)
    bus.publish_bytes("test/slow", b"2").result(5)
    ((payload, thread, _),) = fast.wait(1)
    assert payload == b"1" and not thread.startswith("ipc-handler")
    assert thread != threading.main_thread().name
    ((payload, thread, _),) = pooled.wait(1)
    assert payload == b"2" and thread.startswith("ipc-handler")


def test_a_slow_pooled_handler_does_not_hold_up_inline_delivery(bus: IpcBus) -> None:
    fast, slow = Recorder(), Recorder(delay_s=1.5)
    bus.subscribe("test/fast", fast, inline=True)
    bus.subscribe("test/slow", slow)
    bus.publish_bytes("test/slow", b"slow").result(5)
    time.sleep(0.1)  # the slow handler is sleeping now
    sent = time.monotonic()
    for i in range(5):
        bus.publish_bytes("test/fast", str(i).encode()).result(5)
    got = fast.wait(5, timeout=1.0)  # well before the slow handler returns
    assert [p for p, _, _ in got] == [b"0", b"1", b"2", b"3", b"4"]
    assert max(t for _, _, t in got) - sent < 1.0
    assert slow.wait(1, timeout=5)[0][0] == b"slow"
