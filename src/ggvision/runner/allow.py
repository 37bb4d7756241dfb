"""``--allow`` specs of ``ggvision core exec``: build an ``accessControl`` without a recipe.

A spec is ``SERVICE:OPERATION:RESOURCE`` (the resource may itself contain ``:``), e.g.
``pubsub:publish:local/inference``, ``pubsub:subscribe:local/*``, ``mqttproxy:publish:topic/x``.
Short service names: ``pubsub``, ``mqttproxy``, ``lifecycle``, ``shadow``, ``secrets``; short
operation names are the verb of the IPC operation (``publish``, ``subscribe``, ``pause``, ...) or
``*``. Full names (``aws.greengrass.ipc.pubsub``, ``aws.greengrass#PublishToTopic``) also work.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from ggvision.errors import ConfigError

SERVICES: Final[Mapping[str, tuple[str, Mapping[str, str]]]] = {
    "pubsub": (
        "aws.greengrass.ipc.pubsub",
        {"publish": "PublishToTopic", "subscribe": "SubscribeToTopic"},
    ),
    "mqttproxy": (
        "aws.greengrass.ipc.mqttproxy",
        {"publish": "PublishToIoTCore", "subscribe": "SubscribeToIoTCore"},
    ),
    "lifecycle": (
        "aws.greengrass.ipc.lifecycle",
        {"pause": "PauseComponent", "resume": "ResumeComponent"},
    ),
    "shadow": (
        "aws.greengrass.ShadowManager",
        {
            "get": "GetThingShadow",
            "update": "UpdateThingShadow",
            "delete": "DeleteThingShadow",
            "list": "ListNamedShadowsForThing",
        },
    ),
    "secrets": ("aws.greengrass.SecretManager", {"get": "GetSecretValue"}),
}


def parse_allow(spec: str) -> tuple[str, str, str]:
    """``"pubsub:publish:a/b"`` -> (destination, full operation name, resource)."""
    parts = spec.split(":", 2)
    if len(parts) != 3 or not all(parts):
        raise ConfigError(f"--allow {spec!r}: expected SERVICE:OPERATION:RESOURCE")
    service, operation, resource = parts
    known = SERVICES.get(service.lower())
    if known is not None:
        destination, verbs = known
        if operation == "*":
            return destination, "*", resource
        op = verbs.get(operation.lower())
        if op is None:
            raise ConfigError(f"--allow {spec!r}: {service} operations are {', '.join(verbs)} or *")
        return destination, f"aws.greengrass#{op}", resource
    if "." not in service:
        raise ConfigError(
            f"--allow {spec!r}: unknown service {service!r} (use {', '.join(SERVICES)} or a full "
            "name such as aws.greengrass.ipc.pubsub)"
        )
    if operation != "*" and not operation.startswith("aws.greengrass#"):
        operation = f"aws.greengrass#{operation}"
    return service, operation, resource


def access_control(specs: Sequence[str]) -> dict[str, Any]:
    """An ``accessControl`` map with one policy per (destination, operation)."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for spec in specs:
        destination, operation, resource = parse_allow(spec)
        resources = grouped.setdefault((destination, operation), [])
        if resource not in resources:
            resources.append(resource)
    out: dict[str, Any] = {}
    for i, ((destination, operation), resources) in enumerate(grouped.items(), start=1):
        out.setdefault(destination, {})[f"ggvision.allow.{i}"] = {
            "policyDescription": "from ggvision core exec --allow",
            "operations": [operation],
            "resources": resources,
        }
    return out
