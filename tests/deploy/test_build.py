"""``make build`` artifacts (reproducible, pinned), the GDK build, the version lock and the layout
``make deploy-local`` hands to greengrass-cli."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml

from tools import build_components as bc
from tools import deploy_local

REPO = bc.REPO
REQUESTER = "com.custom.requester"


def test_version_lock_is_current() -> None:
    """Content changed => version bumped (and `make lock` run). Fix: bump ComponentVersion in
    the recipe and gdk-config.json, then `make lock`."""
    recorded = json.loads(bc.LOCK.read_text())
    assert bc.lock_problems(recorded, bc.current_lock()) == []


def test_lock_flags_changed_content_without_a_new_version(tmp_path: Path) -> None:
    src = REPO / "components" / REQUESTER
    copy = tmp_path / REQUESTER
    shutil.copytree(src, copy, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "build"))
    recipe = yaml.safe_load((src / "recipe.yaml").read_text())
    before = bc.fingerprint(copy, recipe)
    assert before == bc.current_lock()[REQUESTER]["fingerprint"]
    module = next((copy / "src").rglob("app.py"))
    module.write_text(module.read_text() + "\n# changed\n")
    after = bc.fingerprint(copy, recipe)
    assert after != before
    recorded = {REQUESTER: {"version": "0.1.0", "fingerprint": before}}
    same_version = {REQUESTER: {"version": "0.1.0", "fingerprint": after}}
    problems = bc.lock_problems(recorded, same_version)
    assert len(problems) == 1 and "content changed but ComponentVersion" in problems[0]
    bumped = {REQUESTER: {"version": "0.1.1", "fingerprint": after}}
    assert "make lock" in bc.lock_problems(recorded, bumped)[0]
    assert bc.lock_problems(bumped, bumped) == []
    # Formatting of the recipe does not count; its content does.
    assert bc.fingerprint(copy, dict(recipe)) == after
    assert bc.fingerprint(copy, {**recipe, "ComponentDescription": "x"}) != after


@pytest.mark.timeout(600)
def test_python_component_zip_is_reproducible_and_pinned(tmp_path: Path) -> None:
    """`make build` twice (here: the build, then GDK's custom build) gives identical bytes."""
    target = bc.build_python_component(
        REPO / "components" / REQUESTER, REQUESTER, "0.1.0", "requester.zip", tmp_path / "a"
    )
    with zipfile.ZipFile(target) as zf:
        names = zf.namelist()
        assert names == sorted(names)
        assert {i.date_time for i in zf.infolist()} == {bc.ZIP_TIME}
        req = zf.read("requirements.txt").decode()
    assert sorted(n for n in names if n.endswith(".whl")) == [
        "ggvision-0.1.0-py3-none-any.whl",
        "ggvision_requester-0.1.0-py3-none-any.whl",
    ]
    pins = [line for line in req.splitlines() if line and not line.startswith("#")]
    assert pins[0] == "ggvision-requester==0.1.0"
    for line in pins:
        assert re.fullmatch(r"[a-z0-9-]+(\[[a-z0-9,-]+\])?==[\w.+-]+", line), line
    names_pinned = {p.split("==")[0] for p in pins}
    assert {"ggvision", "pydantic", "pydantic-core", "awsiotsdk", "awscrt", "pillow"} <= (
        names_pinned
    )

    # GDK: `gdk component build` runs the custom build command in the component folder.
    work = tmp_path / "repo"
    (work / "components").mkdir(parents=True)
    shutil.copytree(REPO / "tools", work / "tools")
    shutil.copytree(
        REPO / "components" / REQUESTER,
        work / "components" / REQUESTER,
        ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "build", "greengrass-build"),
    )
    shutil.copytree(REPO / "src", work / "src", ignore=shutil.ignore_patterns("*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(REPO / name, work / name)
    gdk = json.loads((work / "components" / REQUESTER / "gdk-config.json").read_text())
    cmd = gdk["component"][REQUESTER]["build"]["custom_build_command"]
    env = dict(os.environ, PYTHON=str(REPO / ".venv" / "bin" / "python"))
    subprocess.run(cmd, cwd=work / "components" / REQUESTER, check=True, env=env)
    out = work / "components" / REQUESTER / "greengrass-build"
    gdk_zip = out / "artifacts" / REQUESTER / "0.1.0" / "requester.zip"
    assert gdk_zip.read_bytes() == target.read_bytes()
    assert (out / "recipes" / "recipe.yaml").read_text() == (
        REPO / "components" / REQUESTER / "recipe.yaml"
    ).read_text()


def test_model_store_reference_artifact_is_reproducible_and_points_at_its_pngs(
    tmp_path: Path,
) -> None:
    """The store component ships reference.zip (every manifest, unarchived next to the variants):
    the store's reference.json with each photo a PNG in the zip, pixel for pixel the scikit-image
    sample the store's build names; built twice, the same bytes."""
    import numpy as np
    from PIL import Image

    from tests.classifier.conftest import default_store

    store = default_store()
    pytest.importorskip("skimage", reason="the store's reference photos are scikit-image's")
    import skimage.data

    [(_, recipe)] = bc.load_recipes([bc.MODEL_STORE])
    for manifest in recipe["Manifests"]:
        [art] = [a for a in manifest["Artifacts"] if a["URI"].endswith("/" + bc.REFERENCE_ZIP)]
        assert art["Unarchive"] == "ZIP" and art["Permission"]["Read"] == "ALL"
    assert bc.REFERENCE_ZIP in bc.zip_artifacts(recipe)
    [one] = bc.build_model_store("9.9.9", [bc.REFERENCE_ZIP], store, tmp_path / "a")
    [two] = bc.build_model_store("9.9.9", [bc.REFERENCE_ZIP], store, tmp_path / "b")
    assert one.read_bytes() == two.read_bytes()
    original = json.loads((store / "reference.json").read_text())
    with zipfile.ZipFile(one) as zf:
        names = zf.namelist()
        assert names == sorted(names)
        assert {i.date_time for i in zf.infolist()} == {bc.ZIP_TIME}
        zf.extractall(tmp_path / "reference")
    ref = json.loads((tmp_path / "reference" / "reference.json").read_text())
    assert set(names) == {"reference.json"} | {p["file"] for p in ref["photos"].values()}
    assert list(ref["photos"]) == list(original["photos"])
    for name, photo in ref["photos"].items():
        was = original["photos"][name]
        assert photo["top5"] == was["top5"] and photo["image"] == was["image"]
        func = was["image"].removeprefix("skimage.data.").split("(")[0]
        loaded = getattr(skimage.data, func)()
        sample = np.asarray(loaded[0] if "[0]" in was["image"] else loaded)
        with Image.open(tmp_path / "reference" / photo["file"]) as img:
            assert img.format == "PNG"
            assert np.array_equal(np.asarray(img), sample), name


def _built() -> bool:
    ok = not deploy_local.layout_problems(REPO / "recipes", REPO / "greengrass-build" / "artifacts")
    if not ok and os.environ.get("GGV_REQUIRE_BUILD"):
        pytest.fail("make build has not run (GGV_REQUIRE_BUILD is set)")
    return ok


def test_make_build_layout_is_what_greengrass_cli_reads() -> None:
    if not _built():
        pytest.skip("make build has not run")
    recipes = deploy_local.read_recipes(REPO / "recipes")
    assert set(recipes) == {str(r["ComponentName"]) for _, r in bc.load_recipes()}
    for name, (version, recipe) in recipes.items():
        folder = REPO / "greengrass-build" / "artifacts" / name / version
        assert sorted(p.name for p in folder.iterdir()) == bc.zip_artifacts(recipe)
        for zip_path in folder.iterdir():
            with zipfile.ZipFile(zip_path) as zf:
                assert zf.testzip() is None


def test_deploy_local_checks_the_layout_and_prints_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipes, artifacts = tmp_path / "recipes", tmp_path / "artifacts"
    recipes.mkdir()
    src = REPO / "components" / REQUESTER / "recipe.yaml"
    shutil.copyfile(src, recipes / f"{REQUESTER}-0.1.0.yaml")
    args = ["--recipe-dir", str(recipes), "--artifact-dir", str(artifacts)]
    args += ["--cli", str(tmp_path / "no-greengrass-cli")]
    assert deploy_local.main(args) == 2
    err = capsys.readouterr().err
    assert f"{REQUESTER} 0.1.0" in err and "requester.zip" in err
    (artifacts / REQUESTER / "0.1.0").mkdir(parents=True)
    (artifacts / REQUESTER / "0.1.0" / "requester.zip").write_bytes(b"PK")
    assert deploy_local.main(args) == 0
    out = capsys.readouterr().out
    assert "no Greengrass CLI" in out
    line = out.strip().splitlines()[-1]
    assert "no-greengrass-cli deployment create" in line
    assert f"--recipeDir {recipes}" in line and f"--artifactDir {artifacts}" in line
    assert f"--merge {REQUESTER}=0.1.0" in line
    assert deploy_local.main([*args, "--component", "com.example.Missing"]) == 2


def test_deploy_local_runs_greengrass_cli_when_installed(tmp_path: Path) -> None:
    """A stand-in greengrass-cli (a script recording its arguments) gets the exact command."""
    if os.geteuid() != 0:
        pytest.skip("as non-root the command goes through sudo")
    recipes, artifacts = tmp_path / "recipes", tmp_path / "artifacts"
    recipes.mkdir()
    shutil.copyfile(REPO / "components" / REQUESTER / "recipe.yaml", recipes / "r.yaml")
    (artifacts / REQUESTER / "0.1.0").mkdir(parents=True)
    (artifacts / REQUESTER / "0.1.0" / "requester.zip").write_bytes(b"PK")
    record = tmp_path / "args"
    cli = tmp_path / "greengrass-cli"
    cli.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\n')
    cli.chmod(0o755)
    update = tmp_path / "update.json"
    update.write_text("{}")
    rc = deploy_local.main(
        [
            "--recipe-dir",
            str(recipes),
            "--artifact-dir",
            str(artifacts),
            "--cli",
            str(cli),
            "--update-config",
            str(update),
        ]
    )
    assert rc == 0
    assert record.read_text().split("\n")[:-1] == [
        "deployment",
        "create",
        "--recipeDir",
        str(recipes),
        "--artifactDir",
        str(artifacts),
        "--merge",
        f"{REQUESTER}=0.1.0",
        "--update-config",
        str(update),
    ]
