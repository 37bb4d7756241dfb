"""Install, run once: a stamp in the work directory records a hash of the interpolated script, its
environment and the staged artifacts; an unchanged stamp skips the step (``skip_install`` skips
it always)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from typing import Final

from ggvision.runner._processes import Processes
from ggvision.runner._records import Component
from ggvision.runner._steps import Steps

# The runner's logger, one name across its modules (log lines keep their "logger" field).
log = logging.getLogger("ggvision.runner.runner")

INSTALL_STAMP: Final = ".ggvision-install.sha256"


async def install(
    comp: Component, steps: Steps, processes: Processes, stopping: asyncio.Event
) -> bool | None:
    """True when installed, False on failure, None when stopping."""
    step = comp.selected.lifecycle.step("Install")
    if step is None or steps.options.skip_install:
        return True
    script, env = steps.prepare(comp, "Install", step)
    key = hashlib.sha256(
        json.dumps(
            {
                "version": comp.recipe.version,
                "script": script,
                "setenv": steps.setenv(comp, steps.context(comp), "Install", step),
                "artifacts": comp.artifacts_digest,
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()
    stamp = steps.layout.work(comp.name) / INSTALL_STAMP
    if stamp.is_file() and stamp.read_text().strip() == key:
        log.info(
            "%s: Install unchanged, not run again",
            comp.name,
            extra={"event": "runner.install.cached", "component": comp.name},
        )
        return True
    stamp.unlink(missing_ok=True)
    rc = await processes.run_step(comp, "Install", step, (script, env))
    if stopping.is_set():
        return None
    comp.last_exit = rc
    if rc != 0:
        return False
    stamp.write_text(key + "\n")
    return True
