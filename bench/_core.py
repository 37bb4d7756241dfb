"""The IPC core in its own process, for the benchmark: ``python -m bench._core ROOT [LOOP]``.

``python -m bench._core ROOT LOOP relay``: instead of the core, the floor under it (:func:`relay`).

``LOOP``: ``asyncio`` or ``uvloop`` (default: the core's own choice,
:func:`ggvision.core.eventloop.loop_name`).

Prints one JSON line ``{"socket": ..., "tokens": {...}}`` once listening, then answers ``stats``
lines on stdin with ``{"cpu_s": process_time, "delivered": n}``. Stops at EOF on stdin. The event
loop is the process's only busy thread, so ``time.process_time()`` is the core's CPU.
With ``GGV_BENCH_PROFILE=FILE`` the core runs under cProfile and writes its stats to FILE.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, cast

from ggvision.core import eventloop
from ggvision.core.server import IpcCore
from ggvision.testing.child import serve_until_eof
from ggvision.testing.harness import pubsub_policy

TOPIC = "bench/ipc"
COMPONENTS = {
    "com.bench.Publisher": pubsub_policy(publish=[TOPIC]),
    "com.bench.Subscriber": pubsub_policy(subscribe=[TOPIC]),
}


async def serve(root: Path) -> None:
    core = IpcCore(root / "ipc.socket")

    def stats() -> dict[str, Any]:
        t = os.times()
        return {
            "cpu_s": time.process_time(),
            "user_s": t.user,
            "sys_s": t.system,
            "delivered": core.pubsub.delivered,
        }

    components = {name: {"accessControl": acl} for name, acl in COMPONENTS.items()}
    await serve_until_eof(core, components, stats)


class _Relay(asyncio.BufferedProtocol):
    """The floor under the core: a connection of the relay (see :func:`relay`)."""

    def __init__(self, relay: dict[str, Any]) -> None:
        self.relay = relay
        self.buf = memoryview(bytearray(65536))
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.relay["conns"].append(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.relay["conns"].remove(self)  # the next run's pair comes in order again

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.buf

    def buffer_updated(self, nbytes: int) -> None:
        sub, pub = self.relay["conns"][-2:]  # the latest pair (the last run's may linger)
        sub.transport.write(bytes(self.buf[:nbytes]))  # the event, to the other process
        pub.transport.write(RELAY_RESPONSE * (nbytes // RELAY_MESSAGE))  # the response
        self.relay["delivered"] += nbytes // RELAY_MESSAGE


RELAY_MESSAGE = 200
RELAY_RESPONSE = bytes(16)


async def relay(root: Path) -> None:
    """What the core does per message without the core: read 200 bytes from the second
    connection, write them to the first and 16 bytes back (one read, two writes, each to a
    process that sleeps until it comes). Speaks like :func:`serve` on stdin/stdout."""
    state: dict[str, Any] = {"conns": [], "delivered": 0}
    path = root / "relay.socket"
    server = await asyncio.get_running_loop().create_unix_server(
        lambda: _Relay(state), path=str(path)
    )
    print(json.dumps({"socket": str(path)}), flush=True)
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def on_stdin() -> None:
        line = sys.stdin.readline()
        if not line:
            loop.remove_reader(sys.stdin.fileno())
            done.set_result(None)
        elif line.strip() == "stats":
            print(json.dumps({"cpu_s": time.process_time(), "delivered": state["delivered"]}))
            sys.stdout.flush()

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    try:
        await done
    finally:
        server.close()


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    loop = sys.argv[2] if len(sys.argv) > 2 else None
    if len(sys.argv) > 3 and sys.argv[3] == "relay":
        eventloop.run(relay(Path(sys.argv[1])), loop)
        return
    profile_to = os.environ.get("GGV_BENCH_PROFILE")  # write cProfile stats of the core here
    if not profile_to:
        eventloop.run(serve(Path(sys.argv[1])), loop)
        return
    import cProfile

    with cProfile.Profile() as prof:
        eventloop.run(serve(Path(sys.argv[1])), loop)
    prof.dump_stats(profile_to)


if __name__ == "__main__":
    main()
