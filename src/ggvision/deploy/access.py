"""Recipe ``accessControl`` from the topic markers of a component's configuration model.

A grant is ``(destination, operation, resource)``. :func:`used_grants` reads what a validated
configuration uses (fields marked with ``ggvision.config.publishes()`` etc.);
:func:`access_control` writes the least-privilege ``accessControl`` for those grants;
:func:`declared_grants` flattens a recipe's ``accessControl`` for comparison.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from ggvision.config import TOPIC_MARKERS

Grant = tuple[str, str, str]

_SHORT = {"aws.greengrass.ipc.pubsub": "pubsub", "aws.greengrass.ipc.mqttproxy": "mqttproxy"}


def marked_fields(model: type[BaseModel]) -> dict[str, list[tuple[str, str]]]:
    """Field name -> the (destination, operation) pairs its markers declare."""
    out: dict[str, list[tuple[str, str]]] = {}
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra
        if isinstance(extra, Mapping):
            pairs = [TOPIC_MARKERS[k] for k in TOPIC_MARKERS if extra.get(k)]
            if pairs:
                out[name] = pairs
    return out


def used_grants(config: BaseModel) -> set[Grant]:
    """Every (destination, operation, topic) ``config`` uses, nested models included."""
    grants: set[Grant] = set()
    marks = marked_fields(type(config))
    for name in type(config).model_fields:
        value = getattr(config, name)
        for item in value if isinstance(value, list | tuple) else [value]:
            if isinstance(item, BaseModel):
                grants |= used_grants(item)
            elif isinstance(item, str) and item and name in marks:
                grants |= {(dest, op, item) for dest, op in marks[name]}
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
