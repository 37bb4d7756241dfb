"""``ggvision``: the command line.

Commands live in a table of ``name -> installer`` so later ones (``classify``, ...) add a line::

    ggvision core run    [--recipe-dir DIR] [--artifact-dir DIR] [--update-config JSON|FILE] ...
    ggvision core exec   --component NAME (--recipe FILE | --allow SPEC ...) -- CMD ...
    ggvision core deploy --update-config JSON|FILE
    ggvision core status [--json]
    ggvision recipe validate RECIPE ...
    ggvision publish --bucket B (--thing-group G | --thing T | --no-deploy) ...
    ggvision model import FILE... --store DIR --variant KEY [--to tflite|onnx]

Exit codes: 0 success; 1 a component ended BROKEN, a deployment FAILED or an admin request
failed; 2 bad input (recipes, configuration, arguments); ``core exec`` exits with CMD's code.

This module holds the table, the parser and ``main``; each command lives in a private module
(``_core_run``, ``_core_exec``, ``_core_admin``, ``_recipe``, ``_publish``, ``_plugins``,
``_model``), the options they share in ``_args``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ggvision import __version__
from ggvision.cli._core_admin import install_deploy, install_status
from ggvision.cli._core_exec import install_exec
from ggvision.cli._core_run import install_run
from ggvision.cli._model import install_model
from ggvision.cli._plugins import install_plugins
from ggvision.cli._publish import install_publish
from ggvision.cli._recipe import install_recipe
from ggvision.errors import AdminError, GgvisionError

__all__ = ["COMMANDS", "build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]


def _install_core(sub: Any) -> None:
    p = sub.add_parser("core", help="the local Greengrass IPC core and its component runner")
    core_sub = p.add_subparsers(dest="core_command", required=True, metavar="COMMAND")
    for install in (install_run, install_exec, install_deploy, install_status):
        install(core_sub)


# Top-level commands; add new ones here.
COMMANDS: list[Callable[[Any], None]] = [
    _install_core,
    install_recipe,
    install_publish,
    install_plugins,
    install_model,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ggvision", description="Greengrass Vision command line.")
    parser.add_argument("--version", action="version", version=f"ggvision {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for install in COMMANDS:
        install(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except AdminError as exc:
        print(f"ggvision: error: {exc}", file=sys.stderr)
        return 1
    except GgvisionError as exc:
        print(f"ggvision: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
