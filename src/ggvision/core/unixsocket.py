"""Owner-only Unix sockets, for the IPC socket and the admin socket alike."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from ggvision.errors import GgvisionError

MAX_SOCKET_PATH = 107


def check_socket_path(path: Path) -> None:
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise GgvisionError(
            f"IPC socket path is {len(os.fsencode(path))} bytes; Unix sockets "
            f"allow {MAX_SOCKET_PATH}. Use a shorter root directory."
        )


def unlink_stale_socket(path: Path) -> None:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise GgvisionError(f"{path} exists and is not a socket; refusing to replace it")
    path.unlink()


@contextlib.contextmanager
def owner_only_socket(path: Path) -> Iterator[None]:
    """Around binding a Unix socket at ``path``: a stale socket there goes, its directory is
    made (0700), and the socket is created owner-only (0600). Components may run as other users
    on a device; the token is the guard there."""
    unlink_stale_socket(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    old_umask = os.umask(0o077)
    try:
        yield
        os.chmod(path, 0o600)
    finally:
        os.umask(old_umask)
