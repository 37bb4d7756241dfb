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
import sys
from pathlib import Path
from typing import Any

from ggvision import logs
from ggvision.core.limits import Limits
from ggvision.core.server import IpcCore
from ggvision.testing.child import serve_until_eof
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
    acl = {"accessControl": pubsub_policy(["*"], ["*"])}
    await serve_until_eof(core, dict.fromkeys(names, acl), lambda: stats(core))


def main() -> None:
    root, limits, *names = sys.argv[1:]
    logs.configure(logging.INFO, stream=sys.stderr)
    asyncio.run(serve(Path(root), Limits(**json.loads(limits)), names))


if __name__ == "__main__":
    main()
