"""The base of every component's configuration model: the recipe's camelCase keys, typed.

The same model validates deployment updates before they apply (accept/reject with the reason).
Unknown keys are logged, not fatal, so a device's configuration survives upgrades; the keys the
Nucleus (or our runner) keeps beside a component's own (``accessControl``) are not reported.

Fields that hold a topic say what the component does with it, so the recipe's ``accessControl`` can
be checked (and generated) from the model::

    result_topic: str = Field("local/result", json_schema_extra=publishes())
    uplink_topic: str = Field("", json_schema_extra=publishes_to_iot_core())

An empty topic means "not used". ``ggvision.deploy.access`` reads the markers.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, ValidationError
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


def publishes() -> dict[str, Any]:
    """``json_schema_extra`` of a field naming a local topic the component publishes to."""
    return {"x-ggvision-publish": True}


def subscribes() -> dict[str, Any]:
    """``json_schema_extra`` of a field naming a local topic the component subscribes to."""
    return {"x-ggvision-subscribe": True}


def publishes_to_iot_core() -> dict[str, Any]:
    """``json_schema_extra`` of a field naming an AWS IoT Core topic the component publishes to."""
    return {"x-ggvision-iot-publish": True}


def subscribes_to_iot_core() -> dict[str, Any]:
    """``json_schema_extra`` of a field naming an AWS IoT Core topic filter it subscribes to."""
    return {"x-ggvision-iot-subscribe": True}


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
