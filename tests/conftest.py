"""Shared fixtures: a real IPC core on a thread, real-client agent processes, a real mosquitto."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ggvision.testing.agent import AgentProcess
from ggvision.testing.harness import CoreThread


@pytest.fixture
def core() -> Iterator[CoreThread]:
    with CoreThread(validation_timeout_s=5.0) as c:
        yield c


@pytest.fixture
def frames(tmp_path: Path) -> Path:
    """A ring directory for frame files the tests share between processes (not /dev/shm:
    tests stay inside their own folder)."""
    d = tmp_path / "frames"
    d.mkdir()
    return d


AgentFactory = Callable[..., AgentProcess]


@pytest.fixture
def agent(core: CoreThread) -> Iterator[AgentFactory]:
    """``agent(name, access_control=None, configuration=None)`` -> a real-client process."""
    started: list[AgentProcess] = []

    def make(
        name: str,
        access_control: dict[str, Any] | None = None,
        configuration: dict[str, Any] | None = None,
    ) -> AgentProcess:
        a = AgentProcess(core.component_env(name, access_control, configuration))
        started.append(a)
        return a

    yield make
    for a in started:
        a.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _mosquitto_bin() -> str | None:
    return shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
    )


class Mosquitto:
    """A real mosquitto broker on loopback that tests can stop and start again."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="ggv-mq-", dir="/tmp"))
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
def mosquitto() -> Iterator[Mosquitto]:
    binary = _mosquitto_bin()
    if binary is None:
        if os.environ.get("GGV_REQUIRE_MOSQUITTO"):
            pytest.fail("mosquitto is required (GGV_REQUIRE_MOSQUITTO is set) but not installed")
        pytest.skip("mosquitto is not installed (Debian: apt-get install mosquitto)")
    m = Mosquitto(binary)
    m.start()
    yield m
    m.stop()
    shutil.rmtree(m.dir, ignore_errors=True)
