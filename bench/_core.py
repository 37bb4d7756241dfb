"""The IPC core in its own process, for the benchmark: ``python -m bench._core ROOT``.

Prints one JSON line ``{"socket": ..., "tokens": {...}}`` once listening, then answers ``stats``
lines on stdin with ``{"cpu_s": process_time, "delivered": n}``. Stops at EOF on stdin. The event
loop is the process's only busy thread, so ``time.process_time()`` is the core's CPU.
With ``GGV_BENCH_PROFILE=FILE`` the core runs under cProfile and writes its stats to FILE.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

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
