"""Where a local core keeps its files, mirroring a Greengrass root directory.

```
<root>/ipc.socket                      IPC socket the components connect to
<root>/admin.socket                    admin socket for `ggvision core exec|deploy|status`
<root>/work/<name>/                    each component's working directory ({work:path})
<root>/logs/<name>.log                 each component's stdout/stderr
<root>/logs/greengrass.log             the core's own log
<root>/packages/artifacts/<name>/<version>/               {artifacts:path}
<root>/packages/artifacts-unarchived/<name>/<version>/    {artifacts:decompressedPath}
```

The default root is ``/tmp/ggvision-<uid>``: short, because a Unix socket path may not exceed
107 bytes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ggvision.errors import ConfigError

MAX_SOCKET_PATH: Final = 107


def default_root() -> Path:
    return Path(f"/tmp/ggvision-{os.getuid()}")  # noqa: S108 # short, made 0700 # nosec B108


@dataclass(frozen=True, slots=True)
class Layout:
    root: Path

    @classmethod
    def at(cls, root: Path | None) -> Layout:
        layout = cls((root or default_root()).absolute())
        for sock in (layout.ipc_socket, layout.admin_socket):
            if len(os.fsencode(sock)) > MAX_SOCKET_PATH:
                raise ConfigError(
                    f"socket path {sock} is {len(os.fsencode(sock))} bytes; Unix sockets allow "
                    f"{MAX_SOCKET_PATH}: use a shorter --root"
                )
        return layout

    @property
    def ipc_socket(self) -> Path:
        return self.root / "ipc.socket"

    @property
    def admin_socket(self) -> Path:
        return self.root / "admin.socket"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def core_log(self) -> Path:
        return self.logs / "greengrass.log"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def work(self, name: str) -> Path:
        return self.root / "work" / name

    def artifacts(self, name: str, version: str) -> Path:
        return self.root / "packages" / "artifacts" / name / version

    def unarchived(self, name: str, version: str) -> Path:
        return self.root / "packages" / "artifacts-unarchived" / name / version

    def create(self) -> None:
        """Make the root (owner-only) and its fixed sub-directories."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.root.stat().st_uid != os.getuid():
            raise ConfigError(f"{self.root} belongs to another user; choose another --root")
        os.chmod(self.root, 0o700)
        for sub in ("work", "logs", "packages/artifacts", "packages/artifacts-unarchived"):
            (self.root / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
