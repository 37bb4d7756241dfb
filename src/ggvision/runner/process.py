"""Lifecycle scripts as processes: ``sh -c <script>`` in the component's work directory, in a
new process group (session), with stdout/stderr lines copied to the component's log file.

Never Python's ``shell=True``: the script is one argv element of an explicit ``sh -c``. The
process group matters because a script's children (a ``Startup`` that backgrounds its server,
``pip`` spawning compilers) must stop with it: signals go to the whole group.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

_MAX_LINE = 64 * 1024  # a longer line without newline is logged in pieces
_DRAIN_S = 1.0  # how long to wait for output still in the pipes after the main process exits


def _stamp() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


def _live_member(pgid: int) -> bool:
    """True if a non-zombie process is in group ``pgid`` (True when /proc cannot tell)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 2 and fields[2] == str(pgid).encode() and fields[0] != b"Z":
            return True
    return False


class ComponentLog:
    """``logs/<name>.log``: one line per output line, Greengrass style, plus optional echo
    (``name | line``) to a console stream."""

    def __init__(self, path: Path, name: str, echo: TextIO | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.name = name
        self._file = path.open("a", encoding="utf-8", buffering=1)
        self._echo = echo

    def line(self, step: str, stream: str, text: str) -> None:
        level = "WARN" if stream == "stderr" else "INFO"
        with contextlib.suppress(ValueError):  # closed during shutdown
            self._file.write(f"{_stamp()} [{level}] ({step}) {self.name}: {stream}. {text}\n")
        if self._echo is not None:
            with contextlib.suppress(ValueError, OSError):
                self._echo.write(f"{self.name} | {text}\n")
                self._echo.flush()

    def note(self, text: str) -> None:
        """A line from the runner itself (state changes, exit codes)."""
        with contextlib.suppress(ValueError):
            self._file.write(f"{_stamp()} [INFO] (runner) {self.name}: {text}\n")

    def close(self) -> None:
        self._file.close()


class _ScriptProtocol(asyncio.SubprocessProtocol):
    """Copies output lines to the log as they arrive and tells apart two moments that asyncio's
    ``Process.wait()`` (3.11) conflates: the main process exiting, and every pipe closing
    (which a backgrounded child can postpone forever)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, log: ComponentLog, step: str) -> None:
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self._log = log
        self._step = step
        self._pending: dict[int, bytes] = {1: b"", 2: b""}

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        stream = "stderr" if fd == 2 else "stdout"
        *lines, rest = (self._pending.get(fd, b"") + data).split(b"\n")
        if len(rest) > _MAX_LINE:
            lines.append(rest)
            rest = b""
        self._pending[fd] = rest
        for raw in lines:
            self._log.line(self._step, stream, raw.rstrip(b"\r").decode("utf-8", "replace"))

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        rest = self._pending.pop(fd, b"")
        if rest:
            stream = "stderr" if fd == 2 else "stdout"
            self._log.line(self._step, stream, rest.decode("utf-8", "replace"))

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class ScriptProcess:
    """One running lifecycle script and its process group."""

    def __init__(
        self, transport: asyncio.SubprocessTransport, protocol: _ScriptProtocol, step: str
    ) -> None:
        self._transport = transport
        self._protocol = protocol
        self.step = step
        self.pgid = transport.get_pid()  # start_new_session: the shell leads its own group

    @property
    def returncode(self) -> int | None:
        return self._transport.get_returncode()

    async def wait(self, drain_s: float = _DRAIN_S) -> int:
        """Exit status of the script's main process, once its output is drained (for at most
        ``drain_s``: a child left running in the background may hold the pipes open)."""
        await asyncio.shield(self._protocol.exited)
        if drain_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._protocol.closed), drain_s)
        rc = self._transport.get_returncode()
        assert rc is not None
        return rc

    def signal(self, sig: int) -> bool:
        """Send ``sig`` to the whole group; False when no member is left."""
        try:
            os.killpg(self.pgid, sig)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def group_alive(self) -> bool:
        """A member of the group still runs (zombies waiting for init to reap them don't)."""
        return self.signal(0) and _live_member(self.pgid)

    async def stop(self, grace_s: float) -> int | None:
        """SIGTERM the group, wait up to ``grace_s`` for it to empty, then SIGKILL."""
        deadline = time.monotonic() + grace_s
        self.signal(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._protocol.exited), grace_s)
        while self.group_alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if self.group_alive():
            self.signal(signal.SIGKILL)
        await asyncio.shield(self._protocol.exited)
        self.close()
        return self._transport.get_returncode()

    def kill_leftovers(self) -> None:
        """After the main process exited: children still in its group get SIGKILL."""
        self.signal(signal.SIGKILL)

    def close(self) -> None:
        """Release the pipes (call once the group is gone or no longer of interest)."""
        self._transport.close()


async def start_script(
    script: str,
    *,
    step: str,
    cwd: Path,
    env: Mapping[str, str],
    log: ComponentLog,
) -> ScriptProcess:
    """Start ``sh -c script`` in a new session; its output goes to ``log``."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.subprocess_exec(
        lambda: _ScriptProtocol(loop, log, step),
        "sh",
        "-c",
        script,
        cwd=str(cwd),
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    return ScriptProcess(transport, protocol, step)


async def run_script(
    script: str,
    *,
    step: str,
    cwd: Path,
    env: Mapping[str, str],
    log: ComponentLog,
    timeout_s: float | None,
    grace_s: float = 5.0,
) -> int | None:
    """Run a script to completion; its exit status, or None if it timed out (group killed)."""
    proc = await start_script(script, step=step, cwd=cwd, env=env, log=log)
    try:
        rc = await asyncio.wait_for(proc.wait(), timeout_s)
    except TimeoutError:
        await proc.stop(grace_s)
        return None
    except asyncio.CancelledError:
        await proc.stop(grace_s)
        raise
    proc.kill_leftovers()
    proc.close()
    return rc


def console() -> TextIO:
    """Where echoed component output goes: stderr, so stdout stays JSON log lines."""
    return sys.stderr
