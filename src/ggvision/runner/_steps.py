"""What one lifecycle step runs with: its script and environment, recipe variables resolved
against the components' current configuration, and whether its ``SkipIf`` holds."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Mapping

from ggvision.core.environment import nucleus_env
from ggvision.core.server import IpcCore
from ggvision.errors import GgvisionError
from ggvision.runner._records import Component, RunnerOptions
from ggvision.runner.recipe import Recipe, Step
from ggvision.runner.variables import ComponentPaths, Context, interpolate, interpolate_env

# The runner's logger, one name across its modules (log lines keep their "logger" field).
log = logging.getLogger("ggvision.runner.runner")


class Steps:
    """Prepares the steps of the runner's components (``components``: the runner's own map)."""

    def __init__(
        self, core: IpcCore, options: RunnerOptions, components: Mapping[str, Component]
    ) -> None:
        self.core = core
        self.options = options
        self.layout = options.layout
        self._components = components

    def context(self, comp: Component) -> Context:
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

    def prepare(self, comp: Component, name: str, step: Step) -> tuple[str, dict[str, str]]:
        """The interpolated script and full environment of one step."""
        ctx = self.context(comp)
        where = f"{comp.recipe.source}: Lifecycle.{name}"
        script = interpolate(step.script, ctx, f"{where}.Script")
        env = nucleus_env(
            ipc_socket=self.core.socket_path,
            token=comp.token,
            thing_name=self.options.thing_name,
            region=self.options.region,
            component_version=comp.recipe.version,
        )
        env.update(self.setenv(comp, ctx, name, step))
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

    def setenv(self, comp: Component, ctx: Context, name: str, step: Step) -> dict[str, str]:
        """Lifecycle-level then step-level Setenv, interpolated."""
        source = comp.recipe.source
        return {
            **interpolate_env(comp.selected.lifecycle.setenv, ctx, f"{source}: Lifecycle.Setenv"),
            **interpolate_env(step.setenv, ctx, f"{source}: Lifecycle.{name}.Setenv"),
        }

    def skipped(self, comp: Component, name: str, step: Step, env: Mapping[str, str]) -> bool:
        if step.skip_if is None:
            return False
        target = interpolate(
            step.skip_if.target, self.context(comp), f"{comp.recipe.source}: {name}.SkipIf"
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
