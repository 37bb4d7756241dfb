"""The recipe and the configuration model agree: defaults validate, every tunable is in the
recipe, the accessControl covers exactly the topics used, and bad configuration is rejected with
the key that is wrong while unknown keys are only logged."""

from __future__ import annotations

import json
import logging
import tomllib
from typing import Any

import pytest
from ggvision_camera.app import CameraService
from ggvision_camera.config import (
    CameraConfig,
    ImageFolderSource,
    PiCameraSource,
    StreamSource,
    SyntheticSource,
    V4L2Source,
    VideoFileSource,
)

from ggvision.errors import ConfigError
from ggvision.telemetry import TELEMETRY_TOPIC
from tests.camera.conftest import RECIPE, recipe, recipe_defaults

COMPONENT = RECIPE.parent


def test_the_recipe_defaults_validate_and_equal_the_model_defaults() -> None:
    assert CameraConfig.from_raw(recipe_defaults()) == CameraConfig()


def test_every_tunable_is_in_the_recipe_defaults() -> None:
    defaults = recipe_defaults()
    aliases = {f.alias for f in CameraConfig.model_fields.values()}
    assert aliases == set(defaults) - {"accessControl"}


def test_access_control_grants_exactly_the_topics_the_component_uses() -> None:
    cfg = CameraConfig.from_raw(recipe_defaults())
    policies = recipe_defaults()["accessControl"]["aws.greengrass.ipc.pubsub"].values()
    granted: dict[str, set[str]] = {}
    for policy in policies:
        for op in policy["operations"]:
            granted.setdefault(op, set()).update(policy["resources"])
    assert granted == {
        "aws.greengrass#PublishToTopic": {
            cfg.inference_topic,
            cfg.detect_topic,
            cfg.status_topic,
            TELEMETRY_TOPIC,
        },
        "aws.greengrass#SubscribeToTopic": {cfg.result_topic, *cfg.consumer_status_topics},
    }
    assert cfg.status_topic == "local/status/com.custom.CameraSource"


def test_the_recipe_follows_the_suites_install_and_run_pattern() -> None:
    r = recipe()
    assert r["ComponentName"] == "com.custom.CameraSource"
    for manifest in r["Manifests"]:
        lifecycle = manifest["Lifecycle"]
        assert '"{work:path}/venv"' in lifecycle["Install"]["Script"]
        assert "--system-site-packages" in lifecycle["Install"]["Script"]  # apt's picamera2
        assert 'if [ -n "$GGV_PYTHON" ]; then PY="$GGV_PYTHON"; fi' in lifecycle["Run"]
        assert lifecycle["Run"].endswith("-m ggvision_camera")


def test_gdk_config_and_package_versions_match_the_recipe() -> None:
    gdk = json.loads((COMPONENT / "gdk-config.json").read_text())
    ((name, component),) = gdk["component"].items()
    project = tomllib.loads((COMPONENT / "pyproject.toml").read_text())["project"]
    assert name == recipe()["ComponentName"]
    assert component["version"] == recipe()["ComponentVersion"] == project["version"] == "0.1.0"
    assert component["build"]["build_system"] in {"custom", "zip"}
    assert "picamera2" not in json.dumps(
        project["dependencies"] + project["optional-dependencies"]["opencv"]
    )
    assert all("==" in d for d in project["dependencies"])


@pytest.mark.parametrize(
    ("source", "model"),
    [
        ({"type": "synthetic", "width": 320}, SyntheticSource),
        ({"type": "v4l2", "device": "/dev/video2", "fourcc": "MJPG"}, V4L2Source),
        ({"type": "v4l2", "device": 1, "width": 640, "height": 480, "fps": 30}, V4L2Source),
        ({"type": "stream", "url": "rtsp://10.0.0.5/live", "openTimeoutSeconds": 3}, StreamSource),
        ({"type": "picamera2", "width": 640, "height": 480}, PiCameraSource),
        ({"type": "video", "path": "/data/clip.mp4"}, VideoFileSource),
        ({"type": "folder", "path": "/data/images"}, ImageFolderSource),
    ],
)
def test_each_source_type_selects_its_own_model(source: dict[str, Any], model: type) -> None:
    cfg = CameraConfig.from_raw({"source": source})
    assert isinstance(cfg.source, model)
    assert cfg.source.type == source["type"]


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ({"source": {"type": "webcam"}}, "source"),
        ({"source": {"type": "video"}}, "source.video.path"),
        ({"source": {"type": "stream", "url": "file:///etc/passwd"}}, "source.stream.url"),
        ({"source": {"type": "v4l2", "fourcc": "MJPEG"}}, "source.v4l2.fourcc"),
        ({"fps": -1}, "fps"),
        ({"maxInFlight": 0}, "maxInFlight"),
        ({"transport": "carrier-pigeon"}, "transport"),
        ({"ringName": "../etc/x"}, "ringName"),
        ({"maxInFlight": 8, "ringSlots": 8}, "ringSlots must be larger than maxInFlight"),
        ({"transport": "file"}, "needs fileDirectory"),
        ({"transport": "file", "fileDirectory": "/tmp/f", "fileKeep": 2}, "fileKeep"),
        ({"reconnectInitialSeconds": 5, "reconnectMaxSeconds": 1}, "reconnectMaxSeconds"),
    ],
)
def test_bad_configuration_is_rejected_naming_the_problem(raw: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as info:
        CameraConfig.from_raw(raw)
    assert where in str(info.value)


def test_unknown_keys_are_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ggvision_camera")
    # A deployment that merged a video source over the default synthetic one leaves
    # width/height behind: the camera still starts.
    raw = {
        **recipe_defaults(),
        "futureKey": 1,
        "source": {"type": "video", "path": "/v.mp4", "width": 640, "height": 480},
    }
    cfg = CameraConfig.from_raw(raw)
    assert isinstance(cfg.source, VideoFileSource)
    (record,) = [r for r in caplog.records if getattr(r, "event", "") == "config.unknown_keys"]
    assert vars(record)["keys"] == ["futureKey", "source.height", "source.width"]


def test_a_deployment_is_validated_before_it_applies() -> None:
    validate = CameraService.validate
    assert validate(object.__new__(CameraService), {"fps": 2}) == (True, "")
    accepted, message = validate(object.__new__(CameraService), {"maxInFlight": "lots"})
    assert not accepted and "maxInFlight" in message
