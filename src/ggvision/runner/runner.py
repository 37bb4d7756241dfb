"""Run components from their recipes against a local :class:`~ggvision.core.server.IpcCore`,
the way the Nucleus runs them.

Per component, in dependency order: stage artifacts, register with the core (merged
configuration, recipe defaults, version), then a supervisor task walks the Nucleus state machine:

``NEW`` -> (dependencies installed) Install -> ``INSTALLED`` -> (HARD dependencies ``RUNNING`` or
``FINISHED``) ``STARTING`` -> ``RUNNING``. ``Run`` is ``RUNNING`` as soon as it starts and
``FINISHED`` when it exits 0; ``Startup`` is ``RUNNING`` when it exits 0 (its background processes
live on). A non-zero exit, a timeout, or an ``ERRORED`` the component reports itself through
UpdateState makes it ``ERRORED``: ``Recover`` runs, then a restart after a short back-off; the
third error makes it ``BROKEN`` (no more restarts; the Nucleus counts errors per hour, we count
them per run).

Install runs once: a stamp in the work directory records a hash of the interpolated script, its
environment and the staged artifacts; an unchanged stamp skips it (``skip_install`` skips it
always). Stopping runs ``Shutdown`` of every started component, dependents first, then SIGTERM
to its process group and SIGKILL after ``stop_timeout_s``.

Not modelled: restarting dependents when a HARD dependency restarts, ``Bootstrap`` (logged and
ignored), ``RequiresPrivilege`` (scripts run as the current user, with a warning), and
re-running lifecycles after a configuration deployment (components see the change over IPC;
``{configuration:...}`` placeholders are resolved at each start against the current config).

This module holds the public ``Runner`` and the state machine; ``_records`` its options and
records, ``_steps`` what a step runs with, ``_processes`` the processes, ``_install`` the stamp.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from ggvision.core.server import IpcCore
from ggvision.errors import ConfigError, GgvisionError
from ggvision.runner import artifacts
from ggvision.runner._install import INSTALL_STAMP, install
from ggvision.runner._processes import Processes
from ggvision.runner._records import (
    BROKEN,
    ERRORED,
    FINISHED,
    INSTALL_DONE,
    INSTALLED,
    NEW,
    RUNNING,
    STARTED,
    STARTING,
    STOPPING,
    Component,
    ComponentSummary,
    RunnerOptions,
)
from ggvision.runner._steps import Steps
from ggvision.runner.configuration import initial_configuration
from ggvision.runner.process import ComponentLog
from ggvision.runner.recipe import Recipe

__all__ = [
    "BROKEN",
    "ERRORED",
    "FINISHED",
    "INSTALLED",
    "INSTALL_STAMP",
    "NEW",
    "RUNNING",
    "STARTING",
    "STOPPING",
    "ComponentSummary",
    "Runner",
    "RunnerOptions",
]

log = logging.getLogger(__name__)


class Runner:
    """Owns the component processes; the caller owns the core (start it before :meth:`start`)."""

    def __init__(self, core: IpcCore, plan: Sequence[Recipe], options: RunnerOptions) -> None:
        self.core = core
        self.options = options
        self.layout = options.layout
        self._plan = list(plan)
        self._components: dict[str, Component] = {}
        self._stopping = asyncio.Event()
        self._changed = asyncio.Event()
        self._steps = Steps(core, options, self._components)
        self._processes = Processes(self._steps, options, self._set, self._stopping)
        unknown = sorted(set(options.update) - {r.name for r in plan})
        if unknown:
            raise ConfigError(f"configuration update for components that do not run: {unknown}")

    # --- public -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Stage and register every component, then start their supervisors."""
        self.layout.create()
        self.core.add_state_listener(self._on_state)
        for recipe in self._plan:
            selected = recipe.select(self.options.platform)
            for name in ("Bootstrap",):
                if selected.lifecycle.step(name) is not None:
                    log.warning(
                        "%s: %s is not supported and is ignored",
                        recipe.ident,
                        name,
                        extra={"event": "runner.unsupported_step", "component": recipe.name},
                    )
            self.layout.work(recipe.name).mkdir(parents=True, exist_ok=True, mode=0o700)
            staged = await asyncio.to_thread(
                artifacts.stage, recipe, selected, self.layout, self.options.artifact_dir
            )
            comp = Component(
                recipe,
                selected,
                ComponentLog(self.layout.log(recipe.name), recipe.name, self.options.echo),
                artifacts_digest=staged.digest,
            )
            configuration = initial_configuration(recipe, self.options.update.get(recipe.name))
            comp.token = self.core.register_component(
                recipe.name,
                configuration,
                defaults=dict(recipe.default_configuration),
                version=recipe.version,
            )
            self._components[recipe.name] = comp
            self._set(comp, NEW)
        for comp in self._components.values():
            comp.task = asyncio.create_task(self._supervise(comp), name=f"supervise {comp.name}")

    async def wait_settled(self) -> None:
        """Return once nothing runs or can still start: every component FINISHED, BROKEN, or
        waiting on a BROKEN HARD dependency."""
        while not self._settled():
            await self._next_change()

    async def stop(self) -> None:
        """Clean stop: Shutdown scripts, SIGTERM, SIGKILL after the timeout; dependents first."""
        self._stopping.set()
        self._notify()
        for comp in reversed(list(self._components.values())):
            await self._processes.stop(comp)
        for comp in self._components.values():
            comp.log.close()

    def summary(self) -> list[ComponentSummary]:
        return [
            ComponentSummary(c.name, c.recipe.version, c.state, c.errors, c.starts, c.last_exit)
            for c in self._components.values()
        ]

    # --- states -----------------------------------------------------------------------------
    def _set(self, comp: Component, state: str) -> None:
        comp.state = state
        comp.log.note(f"state {state}")
        self.core.set_state(comp.name, state)

    def _on_state(self, name: str, state: str) -> None:
        comp = self._components.get(name)
        if comp is not None and state != comp.state and state == ERRORED:
            log.warning(
                "%s reported ERRORED",
                name,
                extra={"event": "runner.component.reported_error", "component": name},
            )
            comp.reported_error.set()
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _next_change(self) -> None:
        await self._changed.wait()

    def _settled(self) -> bool:
        return all(
            c.state in (FINISHED, BROKEN) or c.blocked_by is not None
            for c in self._components.values()
        )

    async def _until(self, ready: Sequence[str], states: frozenset[str]) -> bool:
        """Wait until every component in ``ready`` is in ``states``; False if stopping."""
        return await self._wait(lambda: all(self.core.state_of(n) in states for n in ready))

    async def _wait(self, predicate: Callable[[], bool]) -> bool:
        """Wait, state change by state change, until ``predicate()``; False if stopping."""
        while not self._stopping.is_set():
            if predicate():
                return True
            await self._next_change()
        return False

    def _dead(self, name: str) -> bool:
        """BROKEN, or itself waiting on something that is (it will not start)."""
        comp = self._components.get(name)
        return self.core.state_of(name) == BROKEN or (
            comp is not None and comp.blocked_by is not None
        )

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopping; False if a stop came first."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        return not self._stopping.is_set()

    # --- supervision ------------------------------------------------------------------------
    async def _supervise(self, comp: Component) -> None:
        try:
            await self._lifecycle(comp)
        except asyncio.CancelledError:
            raise
        except GgvisionError as exc:
            log.error(
                "%s: %s",
                comp.name,
                exc,
                extra={"event": "runner.component.failed", "component": comp.name},
            )
            comp.log.note(f"failed: {exc}")
            self._set(comp, BROKEN)
        except Exception:  # boundary: one component's bug must not take the runner down
            log.exception(
                "%s: supervisor crashed",
                comp.name,
                extra={"event": "runner.component.crashed", "component": comp.name},
            )
            self._set(comp, BROKEN)

    async def _lifecycle(self, comp: Component) -> None:
        deps = comp.recipe.dependencies
        here = [d for d in deps if d in self._components]
        # Install after every dependency is installed (or given up on).
        if not await self._until(here, INSTALL_DONE | {BROKEN}):
            return
        while True:
            ok = await install(comp, self._steps, self._processes, self._stopping)
            if ok is None:
                return
            if ok:
                break
            if not await self._after_error(comp, "Install"):
                return
        self._set(comp, INSTALLED)

        hard = [d for d in here if deps[d].dependency_type == "HARD"]
        while not self._stopping.is_set():
            if not await self._wait(
                lambda: all(self.core.state_of(d) in STARTED or self._dead(d) for d in hard)
            ):
                return
            dead = [d for d in hard if self._dead(d)]
            if dead:
                comp.blocked_by = dead[0]
                log.warning(
                    "%s waits on dependency %s, which cannot run",
                    comp.name,
                    dead[0],
                    extra={
                        "event": "runner.component.blocked",
                        "component": comp.name,
                        "dependency": dead[0],
                    },
                )
                self._notify()
                if not await self._wait(lambda: not any(self._dead(d) for d in hard)):
                    return
                comp.blocked_by = None
                self._notify()
                continue
            outcome = await self._processes.start(comp)
            if outcome == "finished":
                self._set(comp, FINISHED)
                return
            if outcome == "stopped":
                return
            if not await self._after_error(comp, "Run"):
                return

    async def _after_error(self, comp: Component, step: str) -> bool:
        """Count an error; BROKEN after ``max_errors``; else Recover and back off. True to retry."""
        comp.errors += 1
        self._set(comp, ERRORED)
        log.warning(
            "%s errored (%d of %d)",
            comp.name,
            comp.errors,
            self.options.max_errors,
            extra={
                "event": "runner.component.errored",
                "component": comp.name,
                "step": step,
                "errors": comp.errors,
            },
        )
        if comp.errors >= self.options.max_errors:
            self._set(comp, BROKEN)
            return False
        recover = comp.selected.lifecycle.step("Recover")
        if recover is not None and not self._stopping.is_set():
            await self._processes.run_step(comp, "Recover", recover)
        return await self._sleep(self.options.restart_backoff_s * comp.errors)
