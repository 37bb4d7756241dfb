"""Build every component's artifacts and the recipes greengrass-cli reads; keep the version lock.

Layout (what ``greengrass-cli deployment create --recipeDir recipes --artifactDir
greengrass-build/artifacts``, ``ggvision core run`` and the CDK app read)::

    recipes/<name>-<version>.yaml                         copied from components/<name>/recipe.yaml
    greengrass-build/artifacts/<name>/<version>/<zip>     one zip per ZIP artifact of the recipe

A Python component's zip holds the wheels of the shared library and of the component, plus a
``requirements.txt`` that pins every package the Install step installs (the closure of the
component's dependencies, with the versions of the build environment, which ``make setup``
installs from exact pins). The model store's zips hold one model variant each, built by
``make models`` into ``build/model-store`` (the detection store's: ``make models-detect`` into
``build/detect-store``); the classification store's ``reference.zip`` holds its reference.json
with the reference photos as PNG files (see :func:`reference_files`).

Reproducible: wheels are built from a clean copy of the sources with pinned build tools
(``tools/build-constraints.txt``) and ``SOURCE_DATE_EPOCH``; zips have sorted entries, fixed
timestamps and modes. The same inputs give byte-identical zips.

Version lock (``components/versions.lock.json``): per component its version and a fingerprint
of what goes into its artifacts and recipe (see :func:`fingerprint`). ``--lock`` rewrites it;
``--check-lock`` fails when a fingerprint changed but the version did not (a Greengrass
component version is immutable: new content needs a new version).

Usage: python tools/build_components.py [--component NAME ...] [--model-store DIR] [--out DIR]
       [--recipes DIR] [--recipe-name NAME] [--lock | --check-lock]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
MODEL_STORE = "com.custom.ImageClassification.ModelStore"
# The extra each Python component installs on a device (the runtime it needs).
DEVICE_EXTRAS = {
    "com.custom.ImageClassifier": "tflite",
    "com.custom.ObjectDetector": "tflite",
    "com.custom.CameraSource": "opencv",
}
LOCK = REPO / "components" / "versions.lock.json"
BUILD_CONSTRAINTS = REPO / "tools" / "build-constraints.txt"
ZIP_TIME = (2020, 1, 1, 0, 0, 0)
SOURCE_DATE_EPOCH = "1577836800"  # 2020-01-01T00:00:00Z
# Files of a Python project that go into its wheel (and so into the fingerprint).
_PROJECT_FILES = ("*.py", "*.json", "*.typed", "*.txt", "*.yaml", "*.html", "*.js", "*.css")


def zip_artifacts(recipe: dict[str, Any]) -> list[str]:
    """The file names of the recipe's artifacts (unique per component version)."""
    names: set[str] = set()
    for manifest in recipe.get("Manifests") or []:
        for art in manifest.get("Artifacts") or []:
            uri = str(art["URI"])
            names.add(uri.rsplit("/", 1)[-1])
    return sorted(names)


def write_zip(target: Path, files: dict[str, Path]) -> None:
    """A deterministic zip: sorted entries, fixed timestamps and modes."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for arcname, path in sorted(files.items()):
            info = zipfile.ZipInfo(arcname, date_time=ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            zf.writestr(info, path.read_bytes())
    tmp.replace(target)


def project_sources(project: Path) -> list[Path]:
    """The files of a Python project (pyproject + package files under src/), sorted."""
    files = [project / "pyproject.toml"]
    for pattern in _PROJECT_FILES:
        files += [
            p
            for p in (project / "src").rglob(pattern)
            if "__pycache__" not in p.parts and not any(x.endswith(".egg-info") for x in p.parts)
        ]
    return sorted(set(files))


def _clean_copy(project: Path, into: Path) -> Path:
    """Copy what a wheel is built from (no stale build/ or egg-info); README as a stub, so
    documentation edits do not change device artifacts."""
    dest = into / project.name
    for src in project_sources(project):
        target = dest / src.relative_to(project)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    readme = pyproject.get("project", {}).get("readme")
    if isinstance(readme, str):
        (dest / readme).write_text(f"{pyproject['project']['name']}: see the project README.\n")
    return dest


def build_wheels(component_dir: Path, into: Path) -> list[Path]:
    """Wheels of the shared library and of the component, built reproducibly."""
    with tempfile.TemporaryDirectory() as src:
        projects = [_clean_copy(REPO, Path(src)), _clean_copy(component_dir, Path(src))]
        env = dict(os.environ, SOURCE_DATE_EPOCH=SOURCE_DATE_EPOCH, PYTHONHASHSEED="0")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--quiet",
                "--disable-pip-version-check",
                "--build-constraint",
                str(BUILD_CONSTRAINTS),
                "-w",
                str(into),
                *map(str, projects),
            ],
            check=True,
            env=env,
        )
    return sorted(into.glob("*.whl"))


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def dependency_closure(dist: str, extras: set[str]) -> dict[str, str]:
    """Every distribution ``dist[extras]`` needs on this platform -> its installed version."""
    from packaging.requirements import Requirement

    found: dict[str, str] = {}
    todo: list[tuple[str, set[str]]] = [(dist, extras)]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, wanted = todo.pop()
        key = (_canonical(name), frozenset(wanted))
        if key in seen:
            continue
        seen.add(key)
        d = metadata.distribution(name)
        found[_canonical(d.metadata["Name"])] = d.version
        for line in d.requires or []:
            req = Requirement(line)
            envs = [{"extra": e} for e in wanted] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(e) for e in envs):
                todo.append((req.name, set(req.extras)))
    return found


def requirements(component_dir: Path, name: str) -> str:
    """Exact pins of everything the Install step installs: our wheels (installed first from the
    artifact, so already satisfied) and their dependency closure at the versions of this
    (``make setup``) environment."""
    project = tomllib.loads((component_dir / "pyproject.toml").read_text())["project"]
    extra = DEVICE_EXTRAS.get(name)
    extras = {extra} if extra and extra in project.get("optional-dependencies", {}) else set()
    dist = project["name"]
    closure = dependency_closure(dist, extras)
    top = f"{dist}[{','.join(sorted(extras))}]" if extras else dist
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    lines = [
        f"# {name}: installed by the recipe's Install step into {{work:path}}/venv",
        f"# the dependency closure of {top} (built on {sys.platform}, Python {py})",
    ]
    lines.append(f"{top}=={project['version']}")
    lines += [f"{n}=={v}" for n, v in sorted(closure.items()) if n != _canonical(dist)]
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


# The classification store's ``reference`` artifact (unarchived into ``reference/`` next to the
# variants, where ``modelKey: auto`` looks): the store's reference.json with each photo a PNG.
REFERENCE_ZIP = "reference.zip"
_PHOTO_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def reference_files(store: Path, into: Path) -> dict[str, Path]:
    """``store``'s reference.json rewritten so each photo is a ``file`` (``NAME.png`` beside
    it, written from the scikit-image sample the store's build names, pixel for pixel what
    :func:`ggvision.serving.models.auto.reference_photos` loads), plus those PNGs, in ``into``.
    Deterministic: same reference.json and scikit-image, same bytes."""
    from PIL import Image

    from ggvision.serving.models.auto import reference_photos

    source = store / "reference.json"
    if not source.is_file():
        raise SystemExit(f"{source} is missing: run `make models` first")
    raw = json.loads(source.read_text(encoding="utf-8"))
    files = {}
    for name, pixels, _ in reference_photos(store):
        if not _PHOTO_NAME.fullmatch(name):
            raise SystemExit(f"{source}: photo name {name!r} is not a file name")
        png = into / f"{name}.png"
        Image.fromarray(pixels).save(png, format="PNG")
        raw["photos"][name]["file"] = png.name
        files[png.name] = png
    (into / "reference.json").write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    files["reference.json"] = into / "reference.json"
    return files


def build_model_store(
    version: str, zips: list[str], store: Path, out: Path, name: str = MODEL_STORE
) -> list[Path]:
    built = []
    make = "models" if name == MODEL_STORE else "models-detect"
    for zip_name in zips:
        if name == MODEL_STORE and zip_name == REFERENCE_ZIP:
            with tempfile.TemporaryDirectory() as tmp:
                target = out / name / version / zip_name
                write_zip(target, reference_files(store, Path(tmp)))
            built.append(target)
            continue
        variant = store / zip_name.removesuffix(".zip")
        if not (variant / "manifest.json").is_file():
            raise SystemExit(f"model variant {variant} is missing: run `make {make}` first")
        files = {p.name: p for p in sorted(variant.iterdir()) if p.is_file()}
        target = out / name / version / zip_name
        write_zip(target, files)
        built.append(target)
    return built


# --- version lock ------------------------------------------------------------------------------
def _digest_files(h: Any, base: Path, files: list[Path]) -> None:
    for path in files:
        h.update(path.relative_to(base).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())


def model_build_inputs() -> list[Path]:
    """What ``make models`` builds the model store from (the Makefile's prerequisites)."""
    base = REPO / "modelbuild"
    files = [*base.glob("*.py"), *base.glob("*.sh"), *base.glob("requirements*.txt")]
    return sorted(files)


# The detection model store (`make models-detect` -> build/detect-store), zipped per variant like
# MODEL_STORE; its fingerprint is the inputs of that build.
DETECT_STORE = "com.custom.ObjectDetection.ModelStore"


def detect_build_inputs() -> list[Path]:
    base = REPO / "modelbuild" / "detect"
    return sorted([*base.glob("*.py"), *base.glob("*.sh"), *base.glob("requirements*.txt")])


def fingerprint(component_dir: Path, recipe: dict[str, Any]) -> str:
    """sha256 of what a component version consists of, stable across machines:

    * the recipe (parsed, so comments and formatting do not count);
    * a Python component: the sources and pyproject of the component and of the shared
      library (what its wheels are built from) and its device extra;
    * the model store: the inputs of ``make models`` (``modelbuild/*.py``, ``*.sh``,
      ``requirements*.txt``), not the model files or their manifests, which record hashes of
      a build that is not byte-reproducible across machines.
    """
    h = hashlib.sha256()
    h.update(json.dumps(recipe, sort_keys=True, default=str).encode())
    name = str(recipe["ComponentName"])
    if name in (MODEL_STORE, DETECT_STORE):
        inputs = model_build_inputs() if name == MODEL_STORE else detect_build_inputs()
        _digest_files(h, REPO, inputs)
        return h.hexdigest()
    h.update(json.dumps(DEVICE_EXTRAS.get(name)).encode())
    _digest_files(h, REPO, project_sources(REPO))
    _digest_files(h, component_dir, project_sources(component_dir))
    return h.hexdigest()


def load_recipes(names: list[str] | None = None) -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for recipe_path in sorted((REPO / "components").glob("*/recipe.yaml")):
        recipe = yaml.safe_load(recipe_path.read_text())
        name = recipe["ComponentName"]
        if name != recipe_path.parent.name:
            raise SystemExit(f"{recipe_path}: ComponentName {name} != folder")
        if names and name not in names:
            continue
        out.append((recipe_path, recipe))
    if names and len(out) != len(set(names)):
        raise SystemExit(f"unknown component in {names}")
    return out


def current_lock() -> dict[str, dict[str, str]]:
    lock = {}
    for recipe_path, recipe in load_recipes():
        lock[str(recipe["ComponentName"])] = {
            "version": str(recipe["ComponentVersion"]),
            "fingerprint": fingerprint(recipe_path.parent, recipe),
        }
    return lock


def lock_problems(recorded: dict[str, Any], current: dict[str, dict[str, str]]) -> list[str]:
    """Why ``current`` cannot be deployed under the ``recorded`` lock (empty when fine)."""
    problems = []
    for name, now in sorted(current.items()):
        was = recorded.get(name)
        if was is None:
            problems.append(f"{name}: not in {LOCK.name}; run `make lock`")
        elif was["fingerprint"] != now["fingerprint"]:
            if was["version"] == now["version"]:
                problems.append(
                    f"{name}: content changed but ComponentVersion is still {now['version']}: "
                    "bump it in components/" + name + "/recipe.yaml (and gdk-config.json), then "
                    "run `make lock`"
                )
            else:
                problems.append(f"{name}: bumped to {now['version']}; run `make lock`")
        elif was["version"] != now["version"]:
            problems.append(f"{name}: version {now['version']} not recorded; run `make lock`")
    for name in sorted(set(recorded) - set(current)):
        problems.append(f"{name}: in {LOCK.name} but has no recipe; run `make lock`")
    return problems


def write_lock(lock: dict[str, dict[str, str]], path: Path = LOCK) -> None:
    path.write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--component", action="append", default=None, metavar="NAME")
    parser.add_argument("--model-store", type=Path, default=REPO / "build" / "model-store")
    parser.add_argument("--detect-store", type=Path, default=REPO / "build" / "detect-store")
    parser.add_argument("--out", type=Path, default=REPO / "greengrass-build" / "artifacts")
    parser.add_argument("--recipes", type=Path, default=REPO / "recipes")
    parser.add_argument(
        "--recipe-name", default=None, help="file name in --recipes (default <name>-<version>.yaml)"
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--lock", action="store_true", help=f"rewrite {LOCK.name}, build nothing")
    mode.add_argument("--check-lock", action="store_true", help=f"check {LOCK.name}, build nothing")
    args = parser.parse_args(argv)
    if args.lock or args.check_lock:
        current = current_lock()
        if args.lock:
            write_lock(current)
            print(f"wrote {LOCK.relative_to(REPO)}")
            return 0
        recorded = json.loads(LOCK.read_text()) if LOCK.is_file() else {}
        problems = lock_problems(recorded, current)
        for p in problems:
            print(p, file=sys.stderr)
        return 1 if problems else 0
    args.recipes.mkdir(parents=True, exist_ok=True)
    for recipe_path, recipe in load_recipes(args.component):
        component_dir = recipe_path.parent
        name, version = recipe["ComponentName"], str(recipe["ComponentVersion"])
        shutil.copyfile(recipe_path, args.recipes / (args.recipe_name or f"{name}-{version}.yaml"))
        zips = zip_artifacts(recipe)
        if name == MODEL_STORE:
            targets = build_model_store(version, zips, args.model_store, args.out)
        elif name == DETECT_STORE:
            targets = build_model_store(version, zips, args.detect_store, args.out, name)
        else:
            targets = [
                build_python_component(component_dir, name, version, z, args.out) for z in zips
            ]
        for target in targets:
            print(f"built {target.relative_to(REPO) if target.is_relative_to(REPO) else target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
