"""An IPC core in its own process, for the tests that measure what clients can make it hold:
``python -m tests.core.core_child ROOT LIMITS_JSON NAME...``.

It registers each NAME (allowed to publish and subscribe on every topic) and prints one JSON line
``{"socket": ..., "tokens": {name: token}}`` once listening. Each ``stats`` line on stdin is
answered with the outbound budget's books beside what the transports really hold::

    {"total": n, "by_component": {c: n}, "actual_by_component": {c: n}, "actual_total": n,
     "connections": {c: n}, "cut_offs": n}

Its log (JSON lines) goes to stderr. It stops at EOF on stdin.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from ggvision import logs
from ggvision.core.limits import Limits
from ggvision.core.server import IpcCore
from ggvision.testing.harness import pubsub_policy


def stats(core: IpcCore) -> dict[str, Any]:
    actual: dict[str, int] = {}
    connections: dict[str, int] = {}
    for conn in core.connections:
        name = conn.component or ""
        connections[name] = connections.get(name, 0) + 1
        actual[name] = actual.get(name, 0) + conn.queued_now()
    books = core.server.outbound
    return {
        "total": books.total,
        "by_component": books.by_component(),
        "actual_by_component": {c: n for c, n in actual.items() if n},
        "actual_total": sum(actual.values()),
        "connections": connections,
        "cut_offs": books.cut_offs,
    }


async def serve(root: Path, limits: Limits, names: list[str]) -> None:
    core = IpcCore(root / "ipc.socket", limits=limits)
    await core.start()
    acl = {"accessControl": pubsub_policy(["*"], ["*"])}
    tokens = {name: core.register_component(name, acl) for name in names}
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
                print(json.dumps(stats(core)), flush=True)

    loop.add_reader(fd, on_stdin)
    try:
        await done
    finally:
        await core.stop()


def main() -> None:
    root, limits, *names = sys.argv[1:]
    logs.configure(logging.INFO, stream=sys.stderr)
    asyncio.run(serve(Path(root), Limits(**json.loads(limits)), names))


if __name__ == "__main__":
    main()
