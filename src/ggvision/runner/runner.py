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
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TextIO

from ggvision.core.server import IpcCore
from ggvision.errors import ConfigError, GgvisionError, RecipeError
from ggvision.runner import artifacts
from ggvision.runner.configuration import Update, initial_configuration
from ggvision.runner.environment import DEFAULT_THING_NAME, default_region, nucleus_env
from ggvision.runner.layout import Layout
from ggvision.runner.process import ComponentLog, ScriptProcess, run_script, start_script
from ggvision.runner.recipe import Platform, Recipe, Selected, Step
from ggvision.runner.variables import ComponentPaths, Context, interpolate, interpolate_env

log = logging.getLogger(__name__)

NEW: Final = "NEW"
INSTALLED: Final = "INSTALLED"
STARTING: Final = "STARTING"
RUNNING: Final = "RUNNING"
STOPPING: Final = "STOPPING"
FINISHED: Final = "FINISHED"
ERRORED: Final = "ERRORED"
BROKEN: Final = "BROKEN"

_STARTED: Final = frozenset({RUNNING, FINISHED})
_INSTALL_DONE: Final = frozenset({INSTALLED, STARTING, RUNNING, FINISHED, STOPPING})
INSTALL_STAMP: Final = ".ggvision-install.sha256"


@dataclass(slots=True)
class RunnerOptions:
    layout: Layout
    artifact_dir: Path | None = None
    update: Mapping[str, Update] = field(default_factory=dict)
    skip_install: bool = False
    thing_name: str = DEFAULT_THING_NAME
    region: str = field(default_factory=default_region)
    echo: TextIO | None = None
    max_errors: int = 3
    restart_backoff_s: float = 1.0
    stop_timeout_s: float = 10.0
    platform: Platform = field(default_factory=Platform.current)


@dataclass(frozen=True, slots=True)
class ComponentSummary:
    name: str
    version: str
    state: str
    errors: int
    starts: int
    last_exit: int | None


@dataclass(eq=False)
class _Component:
    recipe: Recipe
    selected: Selected
    log: ComponentLog
    token: str = ""
    state: str = NEW
    errors: int = 0
    starts: int = 0
    last_exit: int | None = None
    started: bool = False  # Startup/Run launched since the last stop: Shutdown applies
    blocked_by: str | None = None  # a HARD dependency that is BROKEN
    artifacts_digest: str = ""
    main: ScriptProcess | None = None
    scripts: set[asyncio.Task[int | None]] = field(default_factory=set)
    reported_error: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.recipe.name


class Runner:
    """Owns the component processes; the caller owns the core (start it before :meth:`start`)."""

    def __init__(self, core: IpcCore, plan: Sequence[Recipe], options: RunnerOptions) -> None:
        self.core = core
        self.options = options
        self.layout = options.layout
        self._plan = list(plan)
        self._components: dict[str, _Component] = {}
        self._stopping = asyncio.Event()
        self._changed = asyncio.Event()
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
            comp = _Component(
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
            await self._stop_component(comp)
        for comp in self._components.values():
            comp.log.close()

    def summary(self) -> list[ComponentSummary]:
        return [
            ComponentSummary(c.name, c.recipe.version, c.state, c.errors, c.starts, c.last_exit)
            for c in self._components.values()
        ]

    # --- states -----------------------------------------------------------------------------
    def _set(self, comp: _Component, state: str) -> None:
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
    async def _supervise(self, comp: _Component) -> None:
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

    async def _lifecycle(self, comp: _Component) -> None:
        deps = comp.recipe.dependencies
        here = [d for d in deps if d in self._components]
        # Install after every dependency is installed (or given up on).
        if not await self._until(here, _INSTALL_DONE | {BROKEN}):
            return
        while True:
            ok = await self._install(comp)
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
                lambda: all(self.core.state_of(d) in _STARTED or self._dead(d) for d in hard)
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
            outcome = await self._start(comp)
            if outcome == "finished":
                self._set(comp, FINISHED)
                return
            if outcome == "stopped":
                return
            if not await self._after_error(comp, "Run"):
                return

    async def _after_error(self, comp: _Component, step: str) -> bool:
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
            await self._run_step(comp, "Recover", recover)
        return await self._sleep(self.options.restart_backoff_s * comp.errors)

    # --- steps ------------------------------------------------------------------------------
    def _context(self, comp: _Component) -> Context:
        def paths(r: Recipe) -> ComponentPaths:
            try:
                config = self.core.config.get(r.name, [])
            except GgvisionError:
                config = {}
            return ComponentPaths(
                artifacts=self.layout.artifacts(r.name, r.version),
                decompressed=self.layout.unarchived(r.name, r.version),
                work=self.layout.work(r.name),
                configuration=config if isinstance(config, dict) else {},
            )

        deps = {
            name: paths(self._components[name].recipe)
            for name in comp.recipe.dependencies
            if name in self._components
        }
        return Context(
            component=comp.name,
            own=paths(comp.recipe),
            dependencies=deps,
            thing_name=self.options.thing_name,
            root=self.layout.root,
        )

    def _prepare(self, comp: _Component, name: str, step: Step) -> tuple[str, dict[str, str]]:
        """The interpolated script and full environment of one step."""
        ctx = self._context(comp)
        where = f"{comp.recipe.source}: Lifecycle.{name}"
        script = interpolate(step.script, ctx, f"{where}.Script")
        env = nucleus_env(
            ipc_socket=self.core.socket_path,
            token=comp.token,
            thing_name=self.options.thing_name,
            region=self.options.region,
            component_version=comp.recipe.version,
        )
        env.update(self._setenv(comp, ctx, name, step))
        if self.options.skip_install:
            # Dev mode: nothing was installed into the component's venv, so our recipes' Run
            # scripts use this interpreter (the one that has the packages) instead.
            env.setdefault("GGV_PYTHON", sys.executable)
        if step.requires_privilege and os.geteuid() != 0:
            log.warning(
                "%s: %s asks for privileges; running it as the current user",
                comp.name,
                name,
                extra={"event": "runner.unprivileged", "component": comp.name, "step": name},
            )
        return script, env

    def _setenv(self, comp: _Component, ctx: Context, name: str, step: Step) -> dict[str, str]:
        """Lifecycle-level then step-level Setenv, interpolated."""
        source = comp.recipe.source
        return {
            **interpolate_env(comp.selected.lifecycle.setenv, ctx, f"{source}: Lifecycle.Setenv"),
            **interpolate_env(step.setenv, ctx, f"{source}: Lifecycle.{name}.Setenv"),
        }

    def _skipped(self, comp: _Component, name: str, step: Step, env: Mapping[str, str]) -> bool:
        if step.skip_if is None:
            return False
        target = interpolate(
            step.skip_if.target, self._context(comp), f"{comp.recipe.source}: {name}.SkipIf"
        )
        if step.skip_if.kind == "onpath":
            hit = shutil.which(target, path=env.get("PATH")) is not None
        else:
            hit = (self.layout.work(comp.name) / target).exists()
        if hit:
            log.info(
                "%s: %s skipped (%s %s)",
                comp.name,
                name,
                step.skip_if.kind,
                target,
                extra={"event": "runner.step.skipped", "component": comp.name, "step": name},
            )
        return hit

    async def _run_step(
        self,
        comp: _Component,
        name: str,
        step: Step,
        prepared: tuple[str, dict[str, str]] | None = None,
    ) -> int | None:
        """Run a short-lived step (Install, Shutdown, Recover) to completion; None on timeout."""
        script, env = prepared or self._prepare(comp, name, step)
        if self._skipped(comp, name, step, env):
            return 0
        timeout = comp.selected.lifecycle.timeout(name)
        comp.log.note(f"{name} starting")
        task = asyncio.create_task(
            run_script(
                script,
                step=name,
                cwd=self.layout.work(comp.name),
                env=env,
                log=comp.log,
                timeout_s=timeout,
                grace_s=self.options.stop_timeout_s,
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

    async def _install(self, comp: _Component) -> bool | None:
        """True when installed, False on failure, None when stopping."""
        step = comp.selected.lifecycle.step("Install")
        if step is None or self.options.skip_install:
            return True
        script, env = self._prepare(comp, "Install", step)
        key = hashlib.sha256(
            json.dumps(
                {
                    "version": comp.recipe.version,
                    "script": script,
                    "setenv": self._setenv(comp, self._context(comp), "Install", step),
                    "artifacts": comp.artifacts_digest,
                },
                sort_keys=True,
            ).encode()
        ).hexdigest()
        stamp = self.layout.work(comp.name) / INSTALL_STAMP
        if stamp.is_file() and stamp.read_text().strip() == key:
            log.info(
                "%s: Install unchanged, not run again",
                comp.name,
                extra={"event": "runner.install.cached", "component": comp.name},
            )
            return True
        stamp.unlink(missing_ok=True)
        rc = await self._run_step(comp, "Install", step, (script, env))
        if self._stopping.is_set():
            return None
        comp.last_exit = rc
        if rc != 0:
            return False
        stamp.write_text(key + "\n")
        return True

    async def _start(self, comp: _Component) -> str:
        """Launch Startup or Run; "finished", "error" or "stopped"."""
        lifecycle = comp.selected.lifecycle
        name = "Startup" if lifecycle.step("Startup") is not None else "Run"
        step = lifecycle.step(name)
        if step is None:
            return "finished"
        script, env = self._prepare(comp, name, step)
        if self._skipped(comp, name, step, env):
            return "finished"
        comp.reported_error.clear()
        self._set(comp, STARTING)
        comp.starts += 1
        comp.log.note(f"{name} starting")
        proc = await start_script(
            script, step=name, cwd=self.layout.work(comp.name), env=env, log=comp.log
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
                await proc.stop(self.options.stop_timeout_s)
                comp.main = None
                comp.started = False
                return "error"
            self._set(comp, RUNNING)
            return await self._watch(comp, None)
        self._set(comp, RUNNING)
        return await self._watch(comp, proc, lifecycle.timeout(name))

    async def _watch(
        self, comp: _Component, proc: ScriptProcess | None, timeout_s: float | None = None
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
            await comp.main.stop(self.options.stop_timeout_s)
            comp.main = None
        comp.started = False
        return "error"

    async def _stop_component(self, comp: _Component) -> None:
        if comp.started:
            self._set(comp, STOPPING)
            shutdown = comp.selected.lifecycle.step("Shutdown")
            if shutdown is not None:
                try:
                    await self._run_step(comp, "Shutdown", shutdown)
                except RecipeError as exc:
                    log.error(
                        "%s: Shutdown not run: %s",
                        comp.name,
                        exc,
                        extra={"event": "runner.shutdown.failed", "component": comp.name},
                    )
        if comp.main is not None:
            await comp.main.stop(self.options.stop_timeout_s)
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
                self._set(comp, FINISHED)
