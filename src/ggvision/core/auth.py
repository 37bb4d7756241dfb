"""Authorization of IPC operations from recipe ``accessControl``, as the Nucleus does it.

``accessControl`` maps destination -> policy id -> {operations, resources}. The principal of every
policy is the component that declares it. Two resource matchers exist:

* the standard one (local pub/sub and everything else): ``*`` matches any run of characters,
  ``/`` included; ``+`` and ``#`` are literal. Escapes ``${*}``, ``${$}``, ``${?}`` stand for the
  literal characters; an unescaped ``?`` makes the resource invalid (see below).
* the MQTT one (``aws.greengrass.ipc.mqttproxy``): ``+`` and ``#`` are MQTT wildcards when they are
  whole levels (``a/#`` also matches ``a``), plus ``*`` as above.

A resource the Nucleus's ``AuthorizationModule.validateResource`` refuses is dropped from its
policy (logged once per load) and the policy's other resources stay: a blank resource, an
unescaped ``?``, or any ``${`` that is not exactly ``${*}``, ``${$}`` or ``${?}`` (``${c}``,
``${}``, ``${*bc}``, a trailing ``${``). A lone ``$`` is literal. A policy whose every resource is
dropped grants nothing, not even the operation on a null resource (the Nucleus never registers it).
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

log = logging.getLogger(__name__)

PUBSUB = "aws.greengrass.ipc.pubsub"
MQTTPROXY = "aws.greengrass.ipc.mqttproxy"
CONFIGSTORE = "aws.greengrass.ipc.configstore"

# Operations each destination knows; a policy naming others can never match.
DESTINATION_OPERATIONS: dict[str, frozenset[str]] = {
    PUBSUB: frozenset({"aws.greengrass#PublishToTopic", "aws.greengrass#SubscribeToTopic"}),
    MQTTPROXY: frozenset({"aws.greengrass#PublishToIoTCore", "aws.greengrass#SubscribeToIoTCore"}),
    "aws.greengrass.SecretManager": frozenset({"aws.greengrass#GetSecretValue"}),
    "aws.greengrass.ShadowManager": frozenset(
        {
            "aws.greengrass#GetThingShadow",
            "aws.greengrass#UpdateThingShadow",
            "aws.greengrass#DeleteThingShadow",
            "aws.greengrass#ListNamedShadowsForThing",
        }
    ),
    "aws.greengrass.ipc.lifecycle": frozenset(
        {"aws.greengrass#PauseComponent", "aws.greengrass#ResumeComponent"}
    ),
    "aws.greengrass.Cli": frozenset(
        {
            "aws.greengrass#CreateLocalDeployment",
            "aws.greengrass#GetLocalDeploymentStatus",
            "aws.greengrass#ListLocalDeployments",
            "aws.greengrass#ListComponents",
            "aws.greengrass#GetComponentDetails",
            "aws.greengrass#RestartComponent",
            "aws.greengrass#StopComponent",
        }
    ),
}


_ESCAPABLE = "*$?"
_ESCAPE_HINT = "You can use ${*}, ${$}, or ${?}"


def resource_error(resource: str) -> str | None:
    """Why the Nucleus refuses this policy resource (its own message), or None when it is valid."""
    # Utils.isEmpty: empty or only Unicode space separators (Character.isSpaceChar).
    if all(unicodedata.category(c) in ("Zs", "Zl", "Zp") for c in resource):
        return "Resource cannot be empty"
    i, n = 0, len(resource)
    while i < n:
        c = resource[i]
        if resource.startswith("${", i):
            if i + 3 >= n or resource[i + 3] != "}":
                return f"Resource contains an invalid escape sequence. {_ESCAPE_HINT}"
            if resource[i + 2] not in _ESCAPABLE:
                return (
                    f"Resource contains an invalid escape sequence: ${{{resource[i + 2]}}}. "
                    f"{_ESCAPE_HINT}"
                )
            i += 4
            continue
        if c == "?":
            return (
                "Resource contains invalid character: '?'. Use an escape sequence: ${?}. "
                "The '?' character isn't supported as a wildcard"
            )
        i += 1
    return None


def _glob_to_regex(resource: str, mqtt: bool) -> re.Pattern[str]:
    """Compile a policy resource that :func:`resource_error` accepted."""
    out: list[str] = []
    i, n = 0, len(resource)
    while i < n:
        if resource.startswith("${", i) and i + 3 < n and resource[i + 3] == "}":
            ch = resource[i + 2]
            if ch in "*$?":
                out.append(re.escape(ch))
                i += 4
                continue
        c = resource[i]
        if c == "*":
            out.append(".*")
        else:
            out.append(re.escape(c))
        i += 1
    if not mqtt:
        return re.compile("".join(out), re.DOTALL)
    # MQTT: treat whole-level + and # as wildcards (the standard part already compiled '*').
    levels = resource.split("/")
    parts: list[str] = []
    for idx, level in enumerate(levels):
        if level == "+":
            parts.append("[^/]*")
        elif level == "#" and idx == len(levels) - 1:
            # 'a/#' matches 'a' and anything below it; a bare '#' matches everything.
            if parts:
                return re.compile("/".join(parts) + "(/.*)?", re.DOTALL)
            return re.compile(".*", re.DOTALL)
        else:
            parts.append(_glob_to_regex(level, mqtt=False).pattern)
    return re.compile("/".join(parts), re.DOTALL)


@dataclass(frozen=True, slots=True)
class Policy:
    policy_id: str
    operations: frozenset[str]
    patterns: tuple[re.Pattern[str], ...]

    def allows(self, operation: str, resource: str | None) -> bool:
        if "*" not in self.operations and operation not in self.operations:
            return False
        if resource is None:
            # The Nucleus lets a null resource match any policy that lists the operation.
            return True
        return any(p.fullmatch(resource) for p in self.patterns)


_MAX_ANSWERS: Final = 1024


class AccessControl:
    """The compiled policies of one component."""

    def __init__(self, component: str, access_control: Mapping[str, Any] | None) -> None:
        self.component = component
        # The answers given so far (the policies never change: a new configuration compiles a
        # new AccessControl); a component publishes to the same few topics again and again.
        self._answers: dict[tuple[str, str, str | None], bool] = {}
        self._by_destination: dict[str, list[Policy]] = {}
        for destination, policies in (access_control or {}).items():
            if destination not in DESTINATION_OPERATIONS:
                log.error(
                    "accessControl destination unknown, dropped",
                    extra={
                        "event": "auth.unknown_destination",
                        "component": component,
                        "destination": destination,
                    },
                )
                continue
            if not isinstance(policies, Mapping):
                log.error("accessControl %s of %s is not a map", destination, component)
                continue
            compiled: list[Policy] = []
            for policy_id, body in policies.items():
                if not isinstance(body, Mapping):
                    log.error("policy %s of %s is not a map", policy_id, component)
                    continue
                ops = frozenset(str(o) for o in (body.get("operations") or []))
                resources = [str(r) for r in body.get("resources") or []]
                pats: list[re.Pattern[str]] = []
                for res in resources:
                    reason = resource_error(res)
                    if reason is not None:
                        log.warning(
                            "resource %r of policy %s of %s dropped (as on the Nucleus): %s",
                            res,
                            policy_id,
                            component,
                            reason,
                            extra={
                                "event": "auth.resource_dropped",
                                "component": component,
                                "destination": destination,
                                "policy": str(policy_id),
                                "resource": res,
                                "reason": reason,
                            },
                        )
                        continue
                    pats.append(_glob_to_regex(res, mqtt=destination == MQTTPROXY))
                if resources and not pats:
                    # Every resource was refused: the Nucleus registers no permission at all, so
                    # the policy must not grant a null resource either.
                    continue
                compiled.append(Policy(str(policy_id), ops, tuple(pats)))
            self._by_destination[destination] = compiled

    def allows(self, destination: str, operation: str, resource: str | None) -> bool:
        key = (destination, operation, resource)
        answer = self._answers.get(key)
        if answer is None:
            answer = self._allows(destination, operation, resource)
            if len(self._answers) >= _MAX_ANSWERS:
                self._answers.clear()  # bounded: a client naming ever new topics
            self._answers[key] = answer
        return answer

    def _allows(self, destination: str, operation: str, resource: str | None) -> bool:
        if operation not in DESTINATION_OPERATIONS.get(destination, frozenset()):
            return False
        if resource == "":
            return False  # "Resource cannot be empty"
        return any(p.allows(operation, resource) for p in self._by_destination.get(destination, ()))
