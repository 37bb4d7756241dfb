"""A component's processes: short-lived steps (Install, Shutdown, Recover) run to completion,
Startup or Run launched and watched as its main process, and its stop (Shutdown, then SIGTERM to
the process group, SIGKILL after ``stop_timeout_s``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from ggvision.errors import RecipeError
from ggvision.runner._records import (
    BROKEN,
    FINISHED,
    RUNNING,
    STARTING,
    STOPPING,
    Component,
    RunnerOptions,
)
from ggvision.runner._steps import Steps
from ggvision.runner.process import ScriptProcess, run_script, start_script
from ggvision.runner.recipe import Step

# The runner's logger, one name across its modules (log lines keep their "logger" field).
log = logging.getLogger("ggvision.runner.runner")


class Processes:
    """Runs the steps ``steps`` prepares; ``set_state`` records a state, ``stopping`` is the
    runner's stop."""

    def __init__(
        self,
        steps: Steps,
        options: RunnerOptions,
        set_state: Callable[[Component, str], None],
        stopping: asyncio.Event,
    ) -> None:
        self._steps = steps
        self._options = options
        self._layout = options.layout
        self._set_state = set_state
        self._stopping = stopping

    async def run_step(
        self,
        comp: Component,
        name: str,
        step: Step,
        prepared: tuple[str, dict[str, str]] | None = None,
    ) -> int | None:
        """Run a short-lived step (Install, Shutdown, Recover) to completion; None on timeout."""
        script, env = prepared or self._steps.prepare(comp, name, step)
        if self._steps.skipped(comp, name, step, env):
            return 0
        timeout = comp.selected.lifecycle.timeout(name)
        comp.log.note(f"{name} starting")
        task = asyncio.create_task(
            run_script(
                script,
                step=name,
                cwd=self._layout.work(comp.name),
                env=env,
                log=comp.log,
                timeout_s=timeout,
                grace_s=self._options.stop_timeout_s,
            )
        )
        comp.scripts.add(task)
        try:
            rc = await task
        finally:
            comp.scripts.discard(task)
        comp.log.note(f"{name} exited {rc if rc is not None else f'(timeout {timeout:g} s)'}")
        log.info(
            "%s: %s exited %s",
            comp.name,
            name,
            rc,
            extra={"event": "runner.step.exit", "component": comp.name, "step": name, "rc": rc},
        )
        return rc

    async def start(self, comp: Component) -> str:
        """Launch Startup or Run; "finished", "error" or "stopped"."""
        lifecycle = comp.selected.lifecycle
        name = "Startup" if lifecycle.step("Startup") is not None else "Run"
        step = lifecycle.step(name)
        if step is None:
            return "finished"
        script, env = self._steps.prepare(comp, name, step)
        if self._steps.skipped(comp, name, step, env):
            return "finished"
        comp.reported_error.clear()
        self._set_state(comp, STARTING)
        comp.starts += 1
        comp.log.note(f"{name} starting")
        proc = await start_script(
            script, step=name, cwd=self._layout.work(comp.name), env=env, log=comp.log
        )
        comp.main = proc
        comp.started = True
        log.info(
            "%s: %s started (pid %d)",
            comp.name,
            name,
            proc.pgid,
            extra={
                "event": "runner.step.start",
                "component": comp.name,
                "step": name,
                "pid": proc.pgid,
            },
        )
        if name == "Startup":
            try:
                rc: int | None = await asyncio.wait_for(
                    proc.wait(drain_s=0), lifecycle.timeout(name)
                )
            except TimeoutError:
                rc = None
            if self._stopping.is_set():
                return "stopped"
            comp.last_exit = rc
            if rc != 0:
                comp.log.note(f"Startup exited {rc if rc is not None else '(timeout)'}")
                await proc.stop(self._options.stop_timeout_s)
                comp.main = None
                comp.started = False
                return "error"
            self._set_state(comp, RUNNING)
            return await self._watch(comp, None)
        self._set_state(comp, RUNNING)
        return await self._watch(comp, proc, lifecycle.timeout(name))

    async def _watch(
        self, comp: Component, proc: ScriptProcess | None, timeout_s: float | None = None
    ) -> str:
        """Until the Run process exits, the component reports ERRORED, or a stop."""
        waits: dict[asyncio.Future[object], str] = {
            asyncio.ensure_future(self._stopping.wait()): "stop",
            asyncio.ensure_future(comp.reported_error.wait()): "reported",
        }
        if proc is not None:
            waits[asyncio.ensure_future(proc.wait())] = "exit"
        try:
            done, _ = await asyncio.wait(
                waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for fut in waits:
                if not fut.done():
                    fut.cancel()
        what = {waits[f] for f in done}
        if "stop" in what or self._stopping.is_set():
            return "stopped"
        if "exit" in what and proc is not None:
            rc = proc.returncode
            comp.last_exit = rc
            comp.log.note(f"Run exited {rc}")
            log.info(
                "%s: Run exited %s",
                comp.name,
                rc,
                extra={
                    "event": "runner.step.exit",
                    "component": comp.name,
                    "step": "Run",
                    "rc": rc,
                },
            )
            proc.kill_leftovers()
            proc.close()
            comp.main = None
            comp.started = False
            return "finished" if rc == 0 else "error"
        # reported ERRORED, or the Run timeout: stop what runs, then restart
        reason = "reported ERRORED" if "reported" in what else f"Run timeout {timeout_s:g} s"
        comp.log.note(f"stopping: {reason}")
        if comp.main is not None:
            await comp.main.stop(self._options.stop_timeout_s)
            comp.main = None
        comp.started = False
        return "error"

    async def stop(self, comp: Component) -> None:
        """Shutdown if it started, then its main process, scripts and supervisor task."""
        if comp.started:
            self._set_state(comp, STOPPING)
            shutdown = comp.selected.lifecycle.step("Shutdown")
            if shutdown is not None:
                try:
                    await self.run_step(comp, "Shutdown", shutdown)
                except RecipeError as exc:
                    log.error(
                        "%s: Shutdown not run: %s",
                        comp.name,
                        exc,
                        extra={"event": "runner.shutdown.failed", "component": comp.name},
                    )
        if comp.main is not None:
            await comp.main.stop(self._options.stop_timeout_s)
            comp.main = None
        for task in list(comp.scripts):
            task.cancel()
        if comp.task is not None:
            comp.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await comp.task
        if comp.started:
            comp.started = False
            if comp.state != BROKEN:
                self._set_state(comp, FINISHED)
