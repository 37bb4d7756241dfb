"""Stage a component's artifacts into the core's package store, the way a local deployment does.

``--artifact-dir DIR`` follows ``greengrass-cli --artifactDir``: the files of ``name@version`` are
in ``DIR/<name>/<version>/``. That folder is mirrored into ``{artifacts:path}`` (so recipes that
reference files without declaring them still work, as with greengrass-cli), every artifact the
manifest declares must be there, declared artifacts get their recipe ``Permission``, and ZIP
artifacts are extracted into ``{artifacts:decompressedPath}/<zip name without .zip>/``.

Extraction is safe: absolute member names, ``..`` components and symbolic links are refused.
Unchanged files are not copied again (same size and mtime) and an unchanged ZIP is not
extracted again (its SHA-256 is stamped next to the extracted folder).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ggvision.errors import RecipeError
from ggvision.runner.layout import Layout
from ggvision.runner.recipe import Artifact, Recipe, Selected

log = logging.getLogger(__name__)

_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Staged:
    """A component's staged artifacts: their folder and a digest of everything in it."""

    path: Path
    decompressed_path: Path
    digest: str


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def stage(recipe: Recipe, selected: Selected, layout: Layout, artifact_dir: Path | None) -> Staged:
    """Copy (if needed), check, chmod and unarchive the artifacts of ``recipe``."""
    dest = layout.artifacts(recipe.name, recipe.version)
    unarchived = layout.unarchived(recipe.name, recipe.version)
    dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    unarchived.mkdir(parents=True, exist_ok=True, mode=0o700)
    source = artifact_dir / recipe.name / recipe.version if artifact_dir is not None else None
    if source is not None and source.is_dir():
        _mirror(source, dest)
    elif source is not None and selected.artifacts:
        raise RecipeError(
            f"{recipe.source}: {recipe.ident} declares artifacts but {source} does not exist "
            "(--artifact-dir holds <name>/<version>/<file>)"
        )
    for art in selected.artifacts:
        path = dest / art.filename
        if not path.is_file():
            where = source if source is not None else dest
            raise RecipeError(
                f"{recipe.source}: artifact {art.uri} of {recipe.ident}: {art.filename} not found "
                f"in {where}"
            )
        os.chmod(path, art.mode)
        if art.unarchive == "ZIP":
            _unarchive(path, unarchived, art)
    digest = hashlib.sha256()
    for rel, file_digest in _tree_digests(dest):
        digest.update(f"{rel}\0{file_digest}\n".encode())
    return Staged(dest, unarchived, digest.hexdigest())


def _tree_digests(root: Path) -> Iterable[tuple[str, str]]:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            yield path.relative_to(root).as_posix(), sha256_file(path)


def _mirror(source: Path, dest: Path) -> None:
    """Make ``dest`` hold exactly the files of ``source`` (copying only what changed)."""
    wanted: set[Path] = set()
    for src in sorted(source.rglob("*")):
        rel = src.relative_to(source)
        target = dest / rel
        if src.is_dir():
            target.mkdir(parents=True, exist_ok=True, mode=0o700)
            wanted.add(rel)
            continue
        if not src.is_file():
            continue
        wanted.add(rel)
        st = src.stat()
        try:
            tst = target.stat()
            if tst.st_size == st.st_size and tst.st_mtime_ns == st.st_mtime_ns:
                continue
        except FileNotFoundError:
            pass
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(src, tmp)
        os.chmod(tmp, stat.S_IMODE(st.st_mode) | stat.S_IRUSR)
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.replace(tmp, target)
        log.debug("copied %s", rel, extra={"event": "artifact.copied", "file": str(target)})
    for path in sorted(dest.rglob("*"), reverse=True):
        if path.relative_to(dest) not in wanted:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


def _unarchive(archive: Path, unarchived: Path, art: Artifact) -> None:
    target = unarchived / art.unarchived_name
    stamp = unarchived / f".{art.filename}.sha256"
    digest = sha256_file(archive)
    if target.is_dir() and stamp.is_file() and stamp.read_text().strip() == digest:
        return
    tmp = Path(tempfile.mkdtemp(prefix=f".{art.unarchived_name}.", dir=unarchived))
    try:
        safe_extract(archive, tmp, file_mode=art.mode)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    stamp.write_text(digest + "\n")
    log.info(
        "unarchived %s",
        archive.name,
        extra={"event": "artifact.unarchived", "archive": str(archive), "into": str(target)},
    )


def safe_extract(archive: Path, dest: Path, *, file_mode: int = 0o400) -> list[Path]:
    """Extract a ZIP into ``dest``, refusing members that would land outside it.

    Rejects absolute names (``/x``, ``C:\\x``), any ``..`` component and symbolic links, before
    writing anything. Files get ``file_mode`` (plus owner-execute if the archive marks them
    executable); folders are 0700 (0755 when the files are readable by all). Returns the files.
    """
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise RecipeError(f"{archive}: not a readable ZIP archive: {exc}") from exc
    dir_mode = 0o755 if file_mode & 0o004 else 0o700
    written: list[Path] = []
    with zf:
        members = zf.infolist()
        parts_of: list[tuple[zipfile.ZipInfo, tuple[str, ...]]] = []
        for info in members:
            name = info.filename.replace("\\", "/")
            parts = PurePosixPath(name).parts
            if (
                name.startswith("/")
                or (len(name) > 1 and name[1] == ":")
                or ".." in parts
                or "\0" in name
            ):
                raise RecipeError(f"{archive}: unsafe member name {info.filename!r}")
            if stat.S_ISLNK(info.external_attr >> 16):
                raise RecipeError(f"{archive}: symbolic link member {info.filename!r} refused")
            parts_of.append((info, tuple(p for p in parts if p not in ("", "."))))
        root = dest.resolve()
        for info, parts in parts_of:
            if not parts:
                continue
            target = dest.joinpath(*parts)
            if not target.resolve().is_relative_to(root):
                raise RecipeError(f"{archive}: member {info.filename!r} escapes {dest}")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True, mode=dir_mode)
                continue
            target.parent.mkdir(parents=True, exist_ok=True, mode=dir_mode)
            with zf.open(info) as src, target.open("wb") as out:
                shutil.copyfileobj(src, out, _CHUNK)
            mode = file_mode
            if (info.external_attr >> 16) & 0o100:
                mode |= 0o100
            os.chmod(target, mode)
            written.append(target)
    return written
