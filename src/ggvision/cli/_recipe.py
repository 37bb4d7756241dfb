"""``ggvision recipe validate``: check recipe files (schema, size limit, version, the runner's
parser)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def install_recipe(sub: Any) -> None:
    p = sub.add_parser("recipe", help="component recipe tools")
    recipe_sub = p.add_subparsers(dest="recipe_command", required=True, metavar="COMMAND")
    v = recipe_sub.add_parser(
        "validate",
        help="check recipes: schema, 16 KB limit, plain version, the runner's parser",
        description="Validate recipe files (YAML or JSON; keys case-insensitive). Exit 0 when "
        "every file is valid, 2 otherwise.",
    )
    v.add_argument("files", nargs="+", type=Path, metavar="RECIPE")
    v.set_defaults(handler=recipe_validate)


def recipe_validate(args: argparse.Namespace) -> int:
    from ggvision.deploy.recipes import validate_recipe_file

    bad = 0
    for path in args.files:
        try:
            problems = validate_recipe_file(path)
        except OSError as exc:
            problems = [exc.strerror or str(exc)]
        if problems:
            bad += 1
            for problem in problems:
                print(f"{path}: {problem}")
        else:
            print(f"{path}: ok")
    return 2 if bad else 0
