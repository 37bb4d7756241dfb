"""An IPC core in a child process, driven over its stdin: for tests and benchmarks that measure
the core from outside (its CPU time, its memory) while real clients talk to it.

:func:`serve_until_eof` prints one JSON line ``{"socket": ..., "tokens": {name: token}}`` once the
core listens, answers each ``stats`` line on stdin with one JSON line of ``stats()``, and stops the
core at EOF on stdin.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from ggvision.core.server import IpcCore


async def serve_until_eof(
    core: IpcCore, components: Mapping[str, dict[str, Any]], stats: Callable[[], dict[str, Any]]
) -> None:
    """Start ``core``, register ``components`` (name -> configuration), serve until stdin ends."""
    await core.start()
    tokens = {name: core.register_component(name, cfg) for name, cfg in components.items()}
    print(json.dumps({"socket": str(core.socket_path), "tokens": tokens}), flush=True)
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    buf = bytearray()
    fd = sys.stdin.fileno()

    def on_stdin() -> None:
        data = os.read(fd, 4096)
        if not data:
            loop.remove_reader(fd)
            if not done.done():
                done.set_result(None)
            return
        buf.extend(data)
        while b"\n" in buf:
            line, _, rest = bytes(buf).partition(b"\n")
            buf[:] = rest
            if line.strip() == b"stats":
                print(json.dumps(stats()), flush=True)

    loop.add_reader(fd, on_stdin)
    try:
        await done
    finally:
        await core.stop()
