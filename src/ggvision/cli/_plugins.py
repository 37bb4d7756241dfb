"""Commands that installed components contribute through the ``ggvision.commands`` entry points."""

from __future__ import annotations

import argparse
import logging
from typing import Any

# The command line's logger, one name across its modules.
log = logging.getLogger("ggvision.cli")


def install_plugins(sub: Any) -> None:
    """Commands that installed components contribute (entry point group ``ggvision.commands``).

    Components depend on this library, never the reverse, so ``ggvision classify`` comes from the
    classifier's package: the entry point names a module with ``add_arguments(parser)`` and
    ``handle(args) -> int`` and a docstring whose first line is the help text.
    """
    from importlib.metadata import entry_points

    for ep in sorted(entry_points(group="ggvision.commands"), key=lambda e: e.name):
        try:
            module = ep.load()
        except ImportError as exc:
            log.debug("command %s unavailable: %s", ep.name, exc)
            continue
        summary = (
            getattr(module, "HELP", None) or (module.__doc__ or ep.name).strip().split("\n")[0]
        )
        p = sub.add_parser(
            ep.name,
            help=summary.split(": ", 1)[-1].rstrip("."),
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(handler=module.handle)
