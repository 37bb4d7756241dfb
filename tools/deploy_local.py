"""``make deploy-local``: deploy the built components to the Greengrass core on this machine.

Checks the layout ``greengrass-cli deployment create`` reads (every recipe in --recipe-dir has
its artifacts under --artifact-dir/<name>/<version>/), then runs::

    greengrass-cli deployment create --recipeDir R --artifactDir A --merge name=version ...

with ``sudo`` when not root. Without a Greengrass installation it prints that exact command.

Usage: python tools/deploy_local.py [--recipe-dir recipes] [--artifact-dir DIR]
       [--component NAME ...] [--update-config FILE] [--cli PATH] [--dry-run]
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run as a script: `tools` is the repository's package
DEFAULT_CLI = Path("/greengrass/v2/bin/greengrass-cli")


def read_recipes(recipe_dir: Path) -> dict[str, tuple[str, dict[str, object]]]:
    """name -> (version, recipe) for every *.yaml|*.yml|*.json below ``recipe_dir``."""
    out: dict[str, tuple[str, dict[str, object]]] = {}
    for path in sorted(recipe_dir.rglob("*")):
        if path.suffix.lower() in (".yaml", ".yml", ".json") and path.is_file():
            recipe = yaml.safe_load(path.read_text())
            out[str(recipe["ComponentName"])] = (str(recipe["ComponentVersion"]), recipe)
    return out


def layout_problems(recipe_dir: Path, artifact_dir: Path) -> list[str]:
    """What greengrass-cli would miss: each artifact must be at <artifactDir>/<name>/<version>/."""
    from tools.build_components import zip_artifacts

    problems = []
    recipes = read_recipes(recipe_dir)
    if not recipes:
        problems.append(f"no recipes in {recipe_dir}: run `make build`")
    for name, (version, recipe) in sorted(recipes.items()):
        for file_name in zip_artifacts(recipe):
            if not (artifact_dir / name / version / file_name).is_file():
                problems.append(f"{name} {version}: {artifact_dir / name / version / file_name}")
    return problems


def command(
    cli: str,
    recipe_dir: Path,
    artifact_dir: Path,
    components: dict[str, str],
    update_config: Path | None = None,
) -> list[str]:
    cmd = [
        cli,
        "deployment",
        "create",
        "--recipeDir",
        str(recipe_dir.resolve()),
        "--artifactDir",
        str(artifact_dir.resolve()),
    ]
    for name, version in sorted(components.items()):
        cmd += ["--merge", f"{name}={version}"]
    if update_config is not None:
        cmd += ["--update-config", str(update_config.resolve())]
    return cmd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipe-dir", type=Path, default=REPO / "recipes")
    parser.add_argument(
        "--artifact-dir", type=Path, default=REPO / "greengrass-build" / "artifacts"
    )
    parser.add_argument("--component", action="append", default=None, metavar="NAME")
    parser.add_argument("--update-config", type=Path, default=None, metavar="FILE")
    parser.add_argument("--cli", default=os.environ.get("GREENGRASS_CLI", str(DEFAULT_CLI)))
    parser.add_argument("--dry-run", action="store_true", help="print the command only")
    args = parser.parse_args(argv)
    problems = layout_problems(args.recipe_dir, args.artifact_dir)
    if problems:
        print("deploy-local: missing artifacts (run `make build`):", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 2
    recipes = read_recipes(args.recipe_dir)
    wanted = args.component or sorted(recipes)
    unknown = sorted(set(wanted) - set(recipes))
    if unknown:
        print(f"deploy-local: no recipe for {', '.join(unknown)}", file=sys.stderr)
        return 2
    cmd = command(
        args.cli,
        args.recipe_dir,
        args.artifact_dir,
        {n: recipes[n][0] for n in wanted},
        args.update_config,
    )
    installed = Path(args.cli).is_file() or shutil.which(args.cli) is not None
    if os.geteuid() != 0:
        cmd = ["sudo", *cmd]
    if args.dry_run or not installed:
        if not installed:
            print(f"# no Greengrass CLI at {args.cli}; the command to run on the core device:")
        print(shlex.join(cmd))
        return 0
    return subprocess.run(cmd, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
