"""The device's platform: its ``os``/``architecture`` attributes and how a manifest's
``Platform`` requirements match them."""

from __future__ import annotations

import platform as _platform
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

# `uname -m` -> Greengrass architecture name.
ARCHITECTURES: Final[Mapping[str, str]] = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "aarch64",
    "arm64": "aarch64",
    "armv7l": "arm",
    "armv6l": "arm",
    "armv8l": "arm",
    "i386": "x86",
    "i686": "x86",
}


@dataclass(frozen=True, slots=True)
class Platform:
    """The device's platform attributes (``os``, ``architecture``, ``architecture.detail``)."""

    attributes: Mapping[str, str]

    @classmethod
    def current(cls) -> Platform:
        machine = _platform.machine().lower()
        system = _platform.system().lower()
        return cls(
            {
                "os": system,
                "architecture": ARCHITECTURES.get(machine, machine),
                "architecture.detail": machine,
            }
        )

    def matches(self, requirements: Mapping[str, str]) -> bool:
        """Every requirement holds: ``*`` matches anything, ``/re/`` is a regex, else equality
        (case-insensitive). A required attribute the device lacks matches only ``*``."""
        for key, wanted in requirements.items():
            if wanted == "*":
                continue
            have = self.attributes.get(key)
            if have is None:
                return False
            if len(wanted) > 1 and wanted.startswith("/") and wanted.endswith("/"):
                if re.fullmatch(wanted[1:-1], have, re.IGNORECASE) is None:
                    return False
            elif wanted.lower() != have.lower():
                return False
        return True

    def __str__(self) -> str:
        return f"{self.attributes.get('os')}/{self.attributes.get('architecture')}"
