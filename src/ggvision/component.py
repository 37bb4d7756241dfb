"""The ``main()`` of every component: one lifetime, from the command line to the exit status.

:func:`run_component` parses ``--log-level`` (and the component's own arguments), configures the
JSON log, connects the :class:`~ggvision.bus.IpcBus`, builds the service with the component's
factory and starts it, then waits (:class:`~ggvision.signals.StopSignals`: SIGTERM or SIGINT,
whichever thread the kernel hands it to) and stops the service and closes the bus. A service that
cannot be built or started (a :class:`~ggvision.errors.GgvisionError`) is logged as
``<name>.start_failed`` ("cannot start: ...") and the exit status is 2.

A service whose work ends by itself (a :class:`Run`, e.g. the requester's one pass) ends the wait
too, and gives the exit status; otherwise it is 0 after a signal.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from ggvision import logs
from ggvision.bus import Bus, IpcBus
from ggvision.errors import GgvisionError
from ggvision.signals import StopSignals

EXIT_OK, EXIT_CANNOT_START = 0, 2
LOG_LEVEL_ENV = "GGV_LOG_LEVEL"


class Service(Protocol):
    """What a component's factory builds: started once, stopped once (from the main thread)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


@runtime_checkable
class Run(Protocol):
    """A service that also ends by itself: ``finished`` is set then, and it has an exit status."""

    @property
    def finished(self) -> threading.Event: ...

    def exit_code(self) -> int: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


def command_line(
    prog: str, description: str | None = None, *, log_level_help: str | None = None
) -> argparse.ArgumentParser:
    """A component's argument parser with ``--log-level`` (default ``$GGV_LOG_LEVEL``); add the
    component's own arguments to it."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "--log-level",
        default=os.environ.get(LOG_LEVEL_ENV),
        help=log_level_help or f"default: ${LOG_LEVEL_ENV}, else INFO",
    )
    return parser


def run_component(
    name: str,
    factory: Callable[[Bus, argparse.Namespace], Service],
    argv: Sequence[str] | None = None,
    *,
    parser: argparse.ArgumentParser,
    logger: logging.Logger | None = None,
    interactive: Callable[[argparse.Namespace], bool] | None = None,
    bus_factory: Callable[[], Bus] = IpcBus,
) -> int:
    """Run a component to its end; returns the exit status.

    ``name`` prefixes the log events (``camera`` -> ``camera.start_failed``,
    ``camera.stopping``), which go to ``logger`` (default: ``ggvision_<name>``). ``parser`` is
    the component's :func:`command_line`. ``interactive(args)`` is True for a run by a person:
    the log goes to stderr, at WARNING unless ``--log-level`` says otherwise, and a start error
    is printed as ``<prog>: <error>`` instead of logged.
    """
    log = logger or logging.getLogger(f"ggvision_{name}")
    args = parser.parse_args(argv)
    human = interactive(args) if interactive is not None else False
    level = args.log_level or ("WARNING" if human else "INFO")
    logs.configure(level=level.upper(), stream=sys.stderr if human else None)

    def cannot_start(exc: GgvisionError) -> int:
        if human:
            print(f"{parser.prog}: {exc}", file=sys.stderr)
        else:
            log.error("cannot start: %s", exc, extra={"event": f"{name}.start_failed"})
        return EXIT_CANNOT_START

    stop = StopSignals()  # from here on a signal is kept (even during start-up), not fatal
    try:
        bus = bus_factory()
    except GgvisionError as exc:
        return cannot_start(exc)
    try:
        service = factory(bus, args)
    except GgvisionError as exc:
        bus.close()
        return cannot_start(exc)
    try:
        service.start()
    except GgvisionError as exc:
        try:  # what it started before failing (threads that would keep the process alive)
            service.stop()
        except Exception:  # boundary: the start error is the one to report
            log.debug("stopping a service that failed to start failed", exc_info=True)
        bus.close()
        return cannot_start(exc)
    run = service if isinstance(service, Run) else None
    signum = stop.wait(until=run.finished if run is not None else None)
    if signum is not None:
        log.info("stopping", extra={"event": f"{name}.stopping"})
    try:
        service.stop()
    finally:
        bus.close()
    return run.exit_code() if run is not None else EXIT_OK
