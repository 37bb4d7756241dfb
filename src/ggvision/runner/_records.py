"""The runner's records: its options, the Nucleus lifecycle state names, the mutable state of one
component the supervisor works on, and the summary the caller reads back."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TextIO

from ggvision.core.environment import DEFAULT_THING_NAME, default_region
from ggvision.runner.configuration import Update
from ggvision.runner.layout import Layout
from ggvision.runner.process import ComponentLog, ScriptProcess
from ggvision.runner.recipe import Platform, Recipe, Selected

NEW: Final = "NEW"
INSTALLED: Final = "INSTALLED"
STARTING: Final = "STARTING"
RUNNING: Final = "RUNNING"
STOPPING: Final = "STOPPING"
FINISHED: Final = "FINISHED"
ERRORED: Final = "ERRORED"
BROKEN: Final = "BROKEN"

STARTED: Final = frozenset({RUNNING, FINISHED})
INSTALL_DONE: Final = frozenset({INSTALLED, STARTING, RUNNING, FINISHED, STOPPING})


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
class Component:
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
