"""A component for tests/shared/test_component.py: ``python -m tests.shared.component_child MODE``.

It prints what happens to its service and bus (``started``, ``stopped``, ``bus closed``) on
stdout between the JSON log lines. Modes: ``serve`` (until a signal, fake bus), ``ipc`` (the same
on the real IpcBus), ``factory-fails``, ``start-fails`` (after starting a non-daemon thread),
``finite`` (a run that ends by itself with status 1), ``human-fails`` (a person's run whose
configuration is bad).
"""

from __future__ import annotations

import argparse
import sys
import threading
from typing import Any

from ggvision.component import command_line, run_component
from ggvision.errors import ConfigError, GgvisionError


def say(what: str) -> None:
    print(what, flush=True)


class FakeBus:
    def close(self) -> None:
        say("bus closed")


class Service:
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self._release = threading.Event()

    def start(self) -> None:
        if self.mode == "start-fails":
            # a thread that would keep the process alive unless stop() is called
            threading.Thread(target=self._release.wait, name="worker").start()
            raise GgvisionError("the camera is not there")
        say("started")

    def stop(self) -> None:
        self._release.set()
        say("stopped")


class Finite(Service):
    def __init__(self, mode: str) -> None:
        super().__init__(mode)
        self.finished = threading.Event()

    def start(self) -> None:
        super().start()
        threading.Timer(0.3, self.finished.set).start()

    def exit_code(self) -> int:
        return 1


def main() -> int:
    mode = sys.argv[1]

    def factory(bus: Any, args: argparse.Namespace) -> Service:
        say(f"log level {args.log_level}")
        if mode in ("factory-fails", "human-fails"):
            raise ConfigError("threshold: must be at most 1")
        return Finite(mode) if mode == "finite" else Service(mode)

    parser = command_line("ggvision-demo", "a test component")
    parser.add_argument("--once", action="store_true")
    kwargs: dict[str, Any] = {} if mode == "ipc" else {"bus_factory": FakeBus}
    return run_component(
        "demo",
        factory,
        sys.argv[2:],
        parser=parser,
        interactive=lambda args: bool(args.once),
        **kwargs,
    )


if __name__ == "__main__":
    sys.exit(main())
