from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

import pytest

from ggvision.errors import RecipeError
from ggvision.runner import artifacts
from ggvision.runner.layout import Layout
from ggvision.runner.recipe import Platform, parse_recipe

from .conftest import simple_recipe

HERE = Platform({"os": "linux", "architecture": "amd64"})


def make_zip(path: Path, members: dict[str, bytes], *, symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        if symlink is not None:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return path


def test_safe_extract_writes_members(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "a.zip", {"model/net.params": b"x", "labels.txt": b"cat\n"})
    out = tmp_path / "out"
    out.mkdir()
    written = artifacts.safe_extract(archive, out, file_mode=0o444)
    assert sorted(p.relative_to(out).as_posix() for p in written) == [
        "labels.txt",
        "model/net.params",
    ]
    assert (out / "labels.txt").read_text() == "cat\n"
    assert stat.S_IMODE((out / "labels.txt").stat().st_mode) == 0o444


@pytest.mark.parametrize(
    "member",
    ["../escape.txt", "a/../../escape.txt", "/etc/cron.d/x", "C:\\windows\\x", "a\\..\\..\\x"],
)
def test_safe_extract_refuses_escaping_names(tmp_path: Path, member: str) -> None:
    archive = make_zip(tmp_path / "evil.zip", {"ok.txt": b"fine", member: b"bad"})
    out = tmp_path / "deep" / "out"
    out.mkdir(parents=True)
    with pytest.raises(RecipeError) as err:
        artifacts.safe_extract(archive, out)
    assert "unsafe member name" in str(err.value)
    assert list(out.iterdir()) == []  # nothing written before the check
    assert not (tmp_path / "deep" / "escape.txt").exists()


def test_safe_extract_refuses_symlinks(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "link.zip", {"ok.txt": b"1"}, symlink="passwd")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(RecipeError) as err:
        artifacts.safe_extract(archive, out)
    assert "symbolic link" in str(err.value)


def test_not_a_zip(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.zip"
    bogus.write_bytes(b"not a zip")
    with pytest.raises(RecipeError):
        artifacts.safe_extract(bogus, tmp_path)


def test_stage_copies_chmods_and_unarchives(tmp_path: Path, short_root: Path) -> None:
    name, version = "com.example.Model", "2.1.0"
    src = tmp_path / "artifacts" / name / version
    src.mkdir(parents=True)
    make_zip(src / "model.zip", {"resnet/labels.txt": b"cat\n"})
    (src / "run.sh").write_text("echo hi\n")
    (src / "undeclared.txt").write_text("copied too, like greengrass-cli\n")
    recipe = parse_recipe(
        simple_recipe(
            name,
            {"Run": "sh {artifacts:path}/run.sh"},
            version=version,
            artifacts=[
                {"URI": f"s3://bucket/{name}/model.zip", "Unarchive": "ZIP"},
                {"URI": "s3://bucket/run.sh", "Permission": {"Execute": "OWNER"}},
            ],
        )
    )
    layout = Layout.at(short_root)
    layout.create()
    staged = artifacts.stage(recipe, recipe.select(HERE), layout, tmp_path / "artifacts")
    assert staged.path == short_root / "packages/artifacts" / name / version
    assert sorted(p.name for p in staged.path.iterdir()) == [
        "model.zip",
        "run.sh",
        "undeclared.txt",
    ]
    assert stat.S_IMODE((staged.path / "run.sh").stat().st_mode) == 0o500
    labels = staged.decompressed_path / "model" / "resnet" / "labels.txt"
    assert labels.read_text() == "cat\n"

    # unchanged: same digest, nothing re-extracted
    before = labels.stat().st_mtime_ns
    again = artifacts.stage(recipe, recipe.select(HERE), layout, tmp_path / "artifacts")
    assert again.digest == staged.digest
    assert labels.stat().st_mtime_ns == before

    # a changed artifact changes the digest; a deleted source file disappears
    (src / "run.sh").write_text("echo changed\n")
    os.utime(src / "run.sh", ns=(1, 1))
    (src / "undeclared.txt").unlink()
    changed = artifacts.stage(recipe, recipe.select(HERE), layout, tmp_path / "artifacts")
    assert changed.digest != staged.digest
    assert not (staged.path / "undeclared.txt").exists()


def test_stage_missing_declared_artifact(tmp_path: Path, short_root: Path) -> None:
    name = "com.example.Missing"
    (tmp_path / name / "1.0.0").mkdir(parents=True)
    recipe = parse_recipe(
        simple_recipe(name, {"Run": "x"}, artifacts=[{"URI": "s3://b/model.zip"}]), "m.yaml"
    )
    layout = Layout.at(short_root)
    layout.create()
    with pytest.raises(RecipeError) as err:
        artifacts.stage(recipe, recipe.select(HERE), layout, tmp_path)
    assert "m.yaml: artifact s3://b/model.zip" in str(err.value)
    assert "model.zip not found" in str(err.value)


def test_layout_refuses_long_socket_paths(tmp_path: Path) -> None:
    from ggvision.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        Layout.at(tmp_path / ("x" * 120))
    assert "use a shorter --root" in str(err.value)
