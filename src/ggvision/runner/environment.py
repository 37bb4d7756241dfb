"""The environment the Nucleus gives every lifecycle script, and so every component process."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

# What GGC_VERSION reports: the Nucleus version this core stands in for.
NUCLEUS_VERSION: Final = "2.14.0"
DEFAULT_THING_NAME: Final = "ggvision-local"
DEFAULT_REGION: Final = "us-east-1"


def default_region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION


def nucleus_env(
    *,
    ipc_socket: Path,
    token: str,
    thing_name: str,
    region: str,
    component_version: str,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """``base`` (default: this process's environment) plus the Nucleus variables."""
    env = dict(os.environ if base is None else base)
    env.update(
        {
            "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT": str(ipc_socket),
            "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH": str(ipc_socket),
            "SVCUID": token,
            "AWS_CONTAINER_AUTHORIZATION_TOKEN": token,
            "AWS_IOT_THING_NAME": thing_name,
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "GGC_VERSION": NUCLEUS_VERSION,
            "GREENGRASS_COMPONENT_VERSION": component_version,
        }
    )
    return env
