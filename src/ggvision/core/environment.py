"""The Nucleus's environment contract: the variables every lifecycle script, and so every
component process, gets from the Nucleus (and from this core's runner and test harness).

The ``awsiotsdk`` client finds the IPC socket and its token here; a component reads its thing
name and region from it. One module states them all.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

# What GGC_VERSION reports: the Nucleus version this core stands in for.
NUCLEUS_VERSION: Final = "2.14.0"
DEFAULT_THING_NAME: Final = "ggvision-local"
DEFAULT_REGION: Final = "us-east-1"

# The variables, by name.
SOCKET_PATH_FOR_COMPONENT: Final = "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"
SOCKET_PATH: Final = "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH"
SVCUID: Final = "SVCUID"
# A variable's name, not a secret:
CONTAINER_AUTHORIZATION_TOKEN: Final = "AWS_CONTAINER_AUTHORIZATION_TOKEN"  # noqa: S105
THING_NAME: Final = "AWS_IOT_THING_NAME"
REGION: Final = "AWS_REGION"
DEFAULT_REGION_VAR: Final = "AWS_DEFAULT_REGION"
GGC_VERSION: Final = "GGC_VERSION"
COMPONENT_VERSION: Final = "GREENGRASS_COMPONENT_VERSION"


def default_region() -> str:
    return os.environ.get(REGION) or os.environ.get(DEFAULT_REGION_VAR) or DEFAULT_REGION


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
            SOCKET_PATH_FOR_COMPONENT: str(ipc_socket),
            SOCKET_PATH: str(ipc_socket),
            SVCUID: token,
            CONTAINER_AUTHORIZATION_TOKEN: token,
            THING_NAME: thing_name,
            REGION: region,
            DEFAULT_REGION_VAR: region,
            GGC_VERSION: NUCLEUS_VERSION,
            COMPONENT_VERSION: component_version,
        }
    )
    return env
