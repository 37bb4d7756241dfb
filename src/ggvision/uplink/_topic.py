"""Topic resolution: ``{thing}`` in a configured topic becomes the core's thing name
(``AWS_IOT_THING_NAME``)."""

from __future__ import annotations

import os

THING_PLACEHOLDER = "{thing}"


def thing_name() -> str:
    return os.environ.get("AWS_IOT_THING_NAME", "") or "unknown"


def resolve_topic(template: str) -> str:
    return template.replace(THING_PLACEHOLDER, thing_name())
