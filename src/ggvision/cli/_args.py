"""Options several commands share: the core root directory and the device identity."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_root(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--root",
        type=Path,
        default=None,
        help="core root directory (default /tmp/ggvision-<uid>; keep it short: socket paths)",
    )


def add_identity(p: argparse.ArgumentParser) -> None:
    from ggvision.core.environment import DEFAULT_THING_NAME

    p.add_argument("--thing-name", default=DEFAULT_THING_NAME, help="AWS_IOT_THING_NAME")
    p.add_argument("--region", default=None, help="AWS_REGION (default: environment or us-east-1)")
