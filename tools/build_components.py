"""Build every component's artifacts and the recipes greengrass-cli reads.

Layout (what ``greengrass-cli deployment create --recipeDir recipes --artifactDir
greengrass-build/artifacts`` and ``ggvision core run`` read)::

    recipes/<name>-<version>.yaml                         copied from components/<name>/recipe.yaml
    greengrass-build/artifacts/<name>/<version>/<zip>     one zip per ZIP artifact of the recipe

A Python component's zip holds the wheels of the shared library and of the component, plus a
pinned ``requirements.txt`` its Install script feeds to pip. The model store's zips hold one model
variant each, built by ``make models`` into ``build/model-store``.

Usage: python tools/build_components.py [--model-store DIR] [--out DIR] [--recipes DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
MODEL_STORE = "com.custom.ImageClassification.ModelStore"
# The extra each Python component installs on a device (the runtime it needs).
DEVICE_EXTRAS = {"com.custom.ImageClassifier": "tflite", "com.custom.CameraSource": "opencv"}


def zip_artifacts(recipe: dict[str, object]) -> list[str]:
    names: set[str] = set()
    for manifest in recipe.get("Manifests") or []:  # type: ignore[attr-defined]
        for art in manifest.get("Artifacts") or []:
            uri = str(art["URI"])
            names.add(uri.rsplit("/", 1)[-1])
    return sorted(names)


def write_zip(target: Path, files: dict[str, Path]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for arcname, path in sorted(files.items()):
            # Fixed timestamps: the same inputs give the same zip (and content hash).
            info = zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
    tmp.replace(target)


def build_wheels(component_dir: Path, into: Path) -> list[Path]:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            str(into),
            str(REPO),
            str(component_dir),
        ],
        check=True,
    )
    return sorted(into.glob("*.whl"))


def requirements(component_dir: Path, name: str) -> str:
    """Exact pins: our wheels by version (found via --find-links), the rest from PyPI."""
    import tomllib

    project = tomllib.loads((component_dir / "pyproject.toml").read_text())["project"]
    extra = DEVICE_EXTRAS.get(name)
    lines = [f"# {name}: installed by the recipe's Install step into {{work:path}}/venv"]
    dist = project["name"]
    spec = (
        f"{dist}[{extra}]" if extra and extra in project.get("optional-dependencies", {}) else dist
    )
    lines.append(f"{spec}=={project['version']}")
    root = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lines.append(f"ggvision=={root['version']}")
    return "\n".join(lines) + "\n"


def build_python_component(
    component_dir: Path, name: str, version: str, zip_name: str, out: Path
) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        wheels = build_wheels(component_dir, Path(tmp))
        req = Path(tmp) / "requirements.txt"
        req.write_text(requirements(component_dir, name))
        files = {w.name: w for w in wheels} | {"requirements.txt": req}
        target = out / name / version / zip_name
        write_zip(target, files)
    return target


def build_model_store(version: str, zips: list[str], store: Path, out: Path) -> list[Path]:
    built = []
    for zip_name in zips:
        variant = store / zip_name.removesuffix(".zip")
        if not (variant / "manifest.json").is_file():
            raise SystemExit(f"model variant {variant} is missing: run `make models` first")
        files = {p.name: p for p in sorted(variant.iterdir()) if p.is_file()}
        target = out / MODEL_STORE / version / zip_name
        write_zip(target, files)
        built.append(target)
    return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-store", type=Path, default=REPO / "build" / "model-store")
    parser.add_argument("--out", type=Path, default=REPO / "greengrass-build" / "artifacts")
    parser.add_argument("--recipes", type=Path, default=REPO / "recipes")
    args = parser.parse_args(argv)
    args.recipes.mkdir(parents=True, exist_ok=True)
    for recipe_path in sorted((REPO / "components").glob("*/recipe.yaml")):
        component_dir = recipe_path.parent
        recipe = yaml.safe_load(recipe_path.read_text())
        name, version = recipe["ComponentName"], str(recipe["ComponentVersion"])
        if name != component_dir.name:
            raise SystemExit(f"{recipe_path}: ComponentName {name} != folder {component_dir.name}")
        shutil.copyfile(recipe_path, args.recipes / f"{name}-{version}.yaml")
        zips = zip_artifacts(recipe)
        if name == MODEL_STORE:
            for target in build_model_store(version, zips, args.model_store, args.out):
                print(
                    f"built {target.relative_to(REPO) if target.is_relative_to(REPO) else target}"
                )
            continue
        for zip_name in zips:
            target = build_python_component(component_dir, name, version, zip_name, args.out)
            print(f"built {target.relative_to(REPO) if target.is_relative_to(REPO) else target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
