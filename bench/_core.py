"""The IPC core in its own process, for the benchmark: ``python -m bench._core ROOT``.

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

from ggvision.core.server import IpcCore
from ggvision.testing.harness import pubsub_policy

TOPIC = "bench/ipc"
COMPONENTS = {
    "com.bench.Publisher": pubsub_policy(publish=[TOPIC]),
    "com.bench.Subscriber": pubsub_policy(subscribe=[TOPIC]),
}


async def serve(root: Path) -> None:
    core = IpcCore(root / "ipc.socket")
    await core.start()
    tokens = {
        name: core.register_component(name, {"accessControl": acl})
        for name, acl in COMPONENTS.items()
    }
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
                t = os.times()
                stats = {
                    "cpu_s": time.process_time(),
                    "user_s": t.user,
                    "sys_s": t.system,
                    "delivered": core.pubsub.delivered,
                }
                print(json.dumps(stats), flush=True)

    loop.add_reader(fd, on_stdin)
    try:
        await done
    finally:
        await core.stop()


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    profile_to = os.environ.get("GGV_BENCH_PROFILE")  # write cProfile stats of the core here
    if not profile_to:
        asyncio.run(serve(Path(sys.argv[1])))
        return
    import cProfile

    with cProfile.Profile() as prof:
        asyncio.run(serve(Path(sys.argv[1])))
    prof.dump_stats(profile_to)


if __name__ == "__main__":
    main()
