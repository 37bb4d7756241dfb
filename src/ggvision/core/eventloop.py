"""The core's event loop: uvloop's when it is installed (the ``core`` extra), asyncio's otherwise.

The core is one event loop that spends most of its time waking up for a message, writing it on
and going back to sleep; uvloop's loop and transports (libuv, compiled) do that with a fraction
of the interpreter work of asyncio's pure-Python selector loop (``make bench BENCH=ipc`` shows
both). Nothing else changes: the core only uses the loop through the ``asyncio`` API, and it
runs the same without uvloop. ``GGV_CORE_LOOP=asyncio`` (or ``uvloop``) picks one explicitly.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar

from ggvision.errors import ConfigError

ENV: Final = "GGV_CORE_LOOP"
ASYNCIO: Final = "asyncio"
UVLOOP: Final = "uvloop"

T = TypeVar("T")


def loop_name(choice: str | None = None) -> str:
    """The loop the core runs on: ``choice``, else ``$GGV_CORE_LOOP``, else uvloop if installed."""
    choice = choice or os.environ.get(ENV) or None
    if choice is None:
        try:
            import uvloop  # noqa: F401
        except ImportError:
            return ASYNCIO
        return UVLOOP
    if choice not in (ASYNCIO, UVLOOP):
        raise ConfigError(f"{ENV} must be {ASYNCIO} or {UVLOOP}, not {choice!r}")
    return choice


def loop_factory(choice: str | None = None) -> Callable[[], asyncio.AbstractEventLoop]:
    """What makes a new loop of :func:`loop_name`'s kind."""
    if loop_name(choice) == ASYNCIO:
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError as exc:
        raise ConfigError(f"{ENV}={UVLOOP} needs uvloop: install the extra ggvision[core]") from exc
    return uvloop.new_event_loop


def new_event_loop(choice: str | None = None) -> asyncio.AbstractEventLoop:
    return loop_factory(choice)()


def run(main: Coroutine[Any, Any, T], choice: str | None = None) -> T:
    """``asyncio.run(main)`` on the core's loop."""
    with asyncio.Runner(loop_factory=loop_factory(choice)) as runner:
        return runner.run(main)
