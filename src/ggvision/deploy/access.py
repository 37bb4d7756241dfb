"""Recipe ``accessControl`` from the topic markers of a component's configuration model.

A grant is ``(destination, operation, resource)``. :func:`used_grants` reads what a validated
configuration uses (fields marked with ``ggvision.config.publishes()`` etc.);
:func:`access_control` writes the least-privilege ``accessControl`` for those grants;
:func:`declared_grants` flattens a recipe's ``accessControl`` for comparison.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from ggvision.config import THING_PLACEHOLDER, TOPIC_MARKERS, ComponentConfig

Grant = tuple[str, str, str]

MQTTPROXY = "aws.greengrass.ipc.mqttproxy"
_SHORT = {"aws.greengrass.ipc.pubsub": "pubsub", MQTTPROXY: "mqttproxy"}


@dataclass(frozen=True)
class Mark:
    destination: str
    operation: str
    also: tuple[str, ...] = ()
    when_empty: str = ""


def marked_fields(model: type[BaseModel]) -> dict[str, list[Mark]]:
    """Field name -> what its markers declare (``ggvision.config.publishes()`` etc.)."""
    out: dict[str, list[Mark]] = {}
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra
        if not isinstance(extra, Mapping):
            continue
        marks = []
        for key, (dest, op) in TOPIC_MARKERS.items():
            if key in extra:
                raw = extra[key]
                body: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
                also = tuple(str(t) for t in body.get("also") or ())
                marks.append(Mark(dest, op, also, str(body.get("whenEmpty") or "")))
        if marks:
            out[name] = marks
    return out


def resource(destination: str, topic: str) -> str:
    """The policy resource for ``topic``: the thing-name placeholder becomes a one-level
    wildcard (``+`` for IoT Core, ``*`` for local pub/sub)."""
    wildcard = "+" if destination == MQTTPROXY else "*"
    return topic.replace(THING_PLACEHOLDER, wildcard)


def used_grants(config: BaseModel) -> set[Grant]:
    """Every (destination, operation, resource) ``config`` uses: marked topic fields (an empty
    one grants its ``when_empty`` topic, if any), their ``also`` topics, nested models, and
    :meth:`ComponentConfig.extra_grants`."""
    grants: set[Grant] = set()
    marks = marked_fields(type(config))
    for name in type(config).model_fields:
        value = getattr(config, name)
        for item in value if isinstance(value, list | tuple) else [value]:
            if isinstance(item, BaseModel):
                grants |= used_grants(item)
                continue
            for mark in marks.get(name, ()):
                topic = item if isinstance(item, str) and item else mark.when_empty
                for t in (topic, *mark.also) if topic else mark.also:
                    grants.add((mark.destination, mark.operation, resource(mark.destination, t)))
    if isinstance(config, ComponentConfig):
        grants |= {(d, o, resource(d, t)) for d, o, t in config.extra_grants()}
    return grants


def declared_grants(access: Mapping[str, Any] | None) -> set[Grant]:
    """Flatten ``accessControl`` (destination -> policy -> operations x resources)."""
    grants: set[Grant] = set()
    for destination, policies in (access or {}).items():
        for body in (policies or {}).values():
            for op in body.get("operations") or []:
                for res in body.get("resources") or []:
                    grants.add((str(destination), str(op), str(res)))
    return grants


def access_control(component: str, grants: set[Grant]) -> dict[str, Any]:
    """The least-privilege ``accessControl`` granting exactly ``grants``: one policy per
    destination and operation, resources sorted (deterministic)."""
    out: dict[str, dict[str, Any]] = {}
    by_op: dict[tuple[str, str], list[str]] = {}
    for dest, op, res in grants:
        by_op.setdefault((dest, op), []).append(res)
    counters: dict[str, int] = {}
    for (dest, op), resources in sorted(by_op.items()):
        short = _SHORT.get(dest, dest)
        counters[dest] = counters.get(dest, 0) + 1
        verb = op.split("#", 1)[-1]
        out.setdefault(dest, {})[f"{component}:{short}:{counters[dest]}"] = {
            "policyDescription": f"{verb} on the topics its configuration names.",
            "operations": [op],
            "resources": sorted(set(resources)),
        }
    return out
