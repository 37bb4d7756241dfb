"""The base of every component's configuration model: the recipe's camelCase keys, typed.

The same model validates deployment updates before they apply (accept/reject with the reason).
Unknown keys are logged, not fatal, so a device's configuration survives upgrades; the keys the
Nucleus (or our runner) keeps beside a component's own (``accessControl``) are not reported.

Fields that hold a topic say what the component does with it, so the recipe's ``accessControl`` can
be checked (and generated) from the model::

    result_topic: str = Field("local/result", json_schema_extra=publishes())
    status_topic: str = Field("...", json_schema_extra=publishes(also=[GREENGRASS_TELEMETRY_TOPIC]))
    command_topic: str = Field("", json_schema_extra=subscribes_to_iot_core(when_empty="a/{thing}"))

An empty topic means "not used" (unless ``when_empty`` pre-authorizes one); ``{thing}`` stands
for the thing name. Derived topics: override ``ComponentConfig.extra_grants``.
``ggvision.deploy.access`` reads all of it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from ggvision.errors import ConfigError

log = logging.getLogger(__name__)

# json_schema_extra keys that mark a topic field; values are (destination, operation).
TOPIC_MARKERS: dict[str, tuple[str, str]] = {
    "x-ggvision-publish": ("aws.greengrass.ipc.pubsub", "aws.greengrass#PublishToTopic"),
    "x-ggvision-subscribe": ("aws.greengrass.ipc.pubsub", "aws.greengrass#SubscribeToTopic"),
    "x-ggvision-iot-publish": ("aws.greengrass.ipc.mqttproxy", "aws.greengrass#PublishToIoTCore"),
    "x-ggvision-iot-subscribe": (
        "aws.greengrass.ipc.mqttproxy",
        "aws.greengrass#SubscribeToIoTCore",
    ),
}


# Greengrass's local telemetry topic (ggvision.telemetry publishes the status figures there).
GREENGRASS_TELEMETRY_TOPIC = "$local/greengrass/telemetry"
# In a topic value, replaced by the core's thing name at run time ({thing} in ggvision.uplink).
THING_PLACEHOLDER = "{thing}"


def _marker(key: str, also: Sequence[str], when_empty: str) -> dict[str, Any]:
    return {key: {"also": list(also), "whenEmpty": when_empty}}


def publishes(*, also: Sequence[str] = (), when_empty: str = "") -> dict[str, Any]:
    """``json_schema_extra`` of a field naming a local topic the component publishes to.

    ``also``: fixed topics that go with it (the status report also goes to Greengrass
    telemetry); ``when_empty``: the topic the recipe pre-authorizes while the field is empty
    (feature off), so a deployment can switch it on without touching ``accessControl``.
    """
    return _marker("x-ggvision-publish", also, when_empty)


def subscribes(*, also: Sequence[str] = (), when_empty: str = "") -> dict[str, Any]:
    """``json_schema_extra`` of a field naming a local topic the component subscribes to."""
    return _marker("x-ggvision-subscribe", also, when_empty)


def publishes_to_iot_core(*, also: Sequence[str] = (), when_empty: str = "") -> dict[str, Any]:
    """``json_schema_extra`` of a field naming an AWS IoT Core topic the component publishes to."""
    return _marker("x-ggvision-iot-publish", also, when_empty)


def subscribes_to_iot_core(*, also: Sequence[str] = (), when_empty: str = "") -> dict[str, Any]:
    """``json_schema_extra`` of a field naming an AWS IoT Core topic filter it subscribes to."""
    return _marker("x-ggvision-iot-subscribe", also, when_empty)


# --- fields every component declares the same way ---------------------------------------------
def inference_topic_field() -> Any:
    """``inferenceTopic``: where a component publishes its inference requests."""
    return Field(
        "local/inference",
        min_length=1,
        description="local topic of the inference requests",
        json_schema_extra=publishes(),
    )


def result_topic_field() -> Any:
    """``resultTopic``: where a requesting component receives the classifier's answers."""
    return Field(
        "local/result",
        min_length=1,
        description="local topic of the results",
        json_schema_extra=subscribes(),
    )


def status_topic_field(component: str) -> Any:
    """``statusTopic``: the periodic status report, also sent to Greengrass telemetry."""
    return Field(
        f"local/status/{component}",
        min_length=1,
        description="local topic of the periodic status report",
        json_schema_extra=publishes(also=[GREENGRASS_TELEMETRY_TOPIC]),
    )


def status_interval_field() -> Any:
    """``statusIntervalSeconds``: seconds between status reports."""
    return Field(10.0, ge=0.1, le=86400, description="seconds between status reports")


def known_keys(model: type[BaseModel]) -> set[str]:
    """Every key ``model`` reads: camelCase aliases and snake_case names."""
    return {f.alias or name for name, f in model.model_fields.items()} | set(model.model_fields)


class ConfigModel(BaseModel):
    """camelCase keys, unknown keys ignored, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )


class ComponentConfig(ConfigModel):
    RESERVED: ClassVar[frozenset[str]] = frozenset({"accessControl"})

    def extra_grants(self) -> set[tuple[str, str, str]]:
        """(destination, operation, topic) grants no single topic field states (derived
        topics); override where a component has them. See ggvision.deploy.access."""
        return set()

    @classmethod
    def unknown_keys(cls, raw: dict[str, Any]) -> list[str]:
        """The keys of ``raw`` this model ignores (override to look inside nested sections)."""
        return sorted(set(raw) - known_keys(cls) - cls.RESERVED)

    @classmethod
    def from_raw(cls, raw: dict[str, Any]) -> Self:
        """Validate a configuration document; ConfigError names the first bad key and why."""
        unknown = cls.unknown_keys(raw)
        if unknown:
            log.warning(
                "ignoring unknown configuration keys: %s",
                ", ".join(unknown),
                extra={"event": "config.unknown_keys", "keys": unknown},
            )
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "configuration"
            raise ConfigError(f"invalid configuration at {where}: {first.get('msg')}") from exc
