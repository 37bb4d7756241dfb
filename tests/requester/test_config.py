"""The requester's recipe against its config model, the images it picks, and the requests it
builds (checked against the message contract the classifier parses)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from ggvision_requester.app import cli_config, parse_args
from ggvision_requester.config import RequesterConfig
from ggvision_requester.engine import backoff
from ggvision_requester.images import Feed, ImageListError, build_request, scan

from ggvision.contract import MAX_INLINE_IMAGE_BYTES, DataImage, PathImage, parse_request
from ggvision.core.auth import PUBSUB, AccessControl
from ggvision.errors import ConfigError
from tests.requester.conftest import RECIPE, recipe_defaults

GDK = RECIPE.parent / "gdk-config.json"


def test_recipe_defaults_validate_and_name_every_tunable() -> None:
    defaults = recipe_defaults()
    cfg = RequesterConfig.from_raw(defaults)
    assert cfg == RequesterConfig()  # the recipe and the model agree on every default
    fields = {f.alias for f in RequesterConfig.model_fields.values()}
    assert set(defaults) - {"accessControl"} == fields


def test_recipe_access_control_is_exactly_its_topics() -> None:
    acl = recipe_defaults()["accessControl"]["aws.greengrass.ipc.pubsub"]
    grants = sorted(
        (op, res)
        for policy in acl.values()
        for op in policy["operations"]
        for res in policy["resources"]
    )
    assert grants == [
        ("aws.greengrass#PublishToTopic", "$local/greengrass/telemetry"),
        ("aws.greengrass#PublishToTopic", "local/inference"),
        ("aws.greengrass#PublishToTopic", "local/status/com.custom.requester"),
        ("aws.greengrass#SubscribeToTopic", "local/result"),
    ]
    check = AccessControl("com.custom.requester", recipe_defaults()["accessControl"])
    cfg = RequesterConfig()
    assert check.allows(PUBSUB, "aws.greengrass#PublishToTopic", cfg.inference_topic)
    assert check.allows(PUBSUB, "aws.greengrass#PublishToTopic", cfg.status_topic)
    assert check.allows(PUBSUB, "aws.greengrass#SubscribeToTopic", cfg.result_topic)


def test_gdk_config_names_the_component_and_an_explicit_version() -> None:
    gdk = json.loads(GDK.read_text(encoding="utf-8"))
    assert gdk["component"]["com.custom.requester"]["version"] == "0.1.0"


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ({"maxInFlight": 0}, "maxInFlight"),
        ({"timeoutS": 0}, "timeoutS"),
        ({"retries": -1}, "retries"),
        ({"transport": "carrier-pigeon"}, "transport"),
        ({"requestForm": "v0"}, "requestForm"),
        ({"repeat": -1}, "repeat"),
        ({"extensions": []}, "extensions"),
    ],
)
def test_invalid_configuration_names_the_key(raw: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as info:
        RequesterConfig.from_raw(raw)
    assert where in str(info.value)


def test_unknown_keys_are_ignored() -> None:
    assert RequesterConfig.from_raw({"futureKnob": 1, "retries": 5}).retries == 5


def test_scan_sorts_filters_by_extension_and_appends_explicit_images(tmp_path: Path) -> None:
    for name in ("b.JPG", "a.png", "c.webp", "d.txt", "e.jpeg", "f.bmp", ".jpg", "noext"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.jpg").mkdir()
    extra = tmp_path / "d.txt"
    cfg = RequesterConfig(image_directory=str(tmp_path), images=[str(extra)])
    assert [p.name for p in scan(cfg)] == ["a.png", "b.JPG", "c.webp", "e.jpeg", "f.bmp", "d.txt"]
    assert all(p.is_absolute() for p in scan(cfg))
    only_png = RequesterConfig(image_directory=str(tmp_path), extensions=[".PNG"])
    assert [p.name for p in scan(only_png)] == ["a.png"]


def test_a_missing_folder_and_an_empty_one(tmp_path: Path) -> None:
    with pytest.raises(ImageListError, match="cannot list"):
        scan(RequesterConfig(image_directory=str(tmp_path / "nope")))
    feed = Feed(lambda: RequesterConfig(image_directory=str(tmp_path)))
    with pytest.raises(ImageListError, match="no images to send"):
        feed.check()
    with pytest.raises(ImageListError, match="no images configured"):
        Feed(RequesterConfig).check()


def test_the_feed_walks_repeat_passes(tmp_path: Path) -> None:
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / name).write_bytes(b"x")
    feed = Feed(lambda: RequesterConfig(image_directory=str(tmp_path), repeat=2))
    taken = []
    while (item := feed.take(0.0)) is not None:
        taken.append((item.path.name, item.pass_no))
    assert taken == [("a.jpg", 1), ("b.jpg", 1), ("a.jpg", 2), ("b.jpg", 2)]
    assert feed.exhausted


def test_a_feed_that_loops_forever_rescans_and_waits_on_an_empty_folder(tmp_path: Path) -> None:
    feed = Feed(lambda: RequesterConfig(image_directory=str(tmp_path), repeat=0))
    assert feed.take(10.0) is None
    assert not feed.exhausted
    assert feed.not_before == 11.0
    (tmp_path / "new.jpg").write_bytes(b"x")
    assert feed.take(10.5) is None  # not before the rescan is due
    item = feed.take(11.0)
    assert item is not None
    assert item.path.name == "new.jpg"


def _image(tmp_path: Path, size: int) -> Path:
    path = tmp_path / f"img{size}.jpg"
    path.write_bytes(b"\xff\xd8" + b"\0" * (size - 2))
    return path


def test_requests_by_path_inline_and_seed_parse_as_the_classifier_would(tmp_path: Path) -> None:
    small, big = _image(tmp_path, 1000), _image(tmp_path, MAX_INLINE_IMAGE_BYTES + 1)

    request, transport = build_request(RequesterConfig(top_k=3), "r1", small)
    parsed = parse_request(request)
    assert (transport, parsed.id, parsed.top_k, parsed.source) == (
        "path",
        "r1",
        3,
        "com.custom.requester",
    )
    assert parsed.image == PathImage(path=str(small))

    request, transport = build_request(RequesterConfig(transport="inline"), "r2", small)
    parsed = parse_request(request)
    assert transport == "inline"
    assert isinstance(parsed.image, DataImage)
    assert base64.b64decode(parsed.image.data) == small.read_bytes()
    assert parsed.top_k is None  # topK 0: the classifier's own default

    request, transport = build_request(RequesterConfig(transport="inline"), "r3", big)
    assert transport == "path"  # too big to go inline
    assert parse_request(request).image == PathImage(path=str(big))

    request, transport = build_request(RequesterConfig(request_form="seed"), "r4", small)
    assert transport == "seed"
    assert request["image_dir"] == str(tmp_path)
    assert request["fname"] == small.name
    assert "image" not in request
    assert parse_request(request).image == PathImage(path=str(small))


@pytest.mark.parametrize(("attempts", "expected"), [(1, 0.5), (2, 1.0), (3, 2.0), (6, 8.0)])
def test_backoff_doubles_and_is_capped(attempts: int, expected: float) -> None:
    cfg = RequesterConfig(backoff_s=0.5, max_backoff_s=8.0)
    assert backoff(cfg, attempts) == expected
    assert backoff(cfg, attempts, jitter=1.0) == pytest.approx(expected * 1.2)


def test_command_line_overrides_the_configuration(tmp_path: Path) -> None:
    image = _image(tmp_path, 10)
    folder = tmp_path / "dir"
    folder.mkdir()
    base = RequesterConfig(image_directory="/elsewhere", repeat=0, retries=5, max_in_flight=2)
    args = parse_args(
        [
            str(folder),
            str(image),
            "--jsonl",
            "out.jsonl",
            "--csv",
            "out.csv",
            "--annotate",
            "ann",
            "--timeout",
            "3",
            "--retries",
            "1",
        ]
    )
    cfg = cli_config(base, args)
    assert (cfg.image_directory, cfg.images) == (str(folder), [str(image)])
    assert (cfg.output_jsonl, cfg.output_csv, cfg.annotate_directory) == (
        "out.jsonl",
        "out.csv",
        "ann",
    )
    assert (cfg.timeout_s, cfg.retries, cfg.repeat, cfg.max_in_flight) == (3.0, 1, 1, 2)
    assert cli_config(base, parse_args([])) == base  # the component: configuration only


def test_command_line_rejects_missing_paths_and_bad_values(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        cli_config(RequesterConfig(), parse_args([str(tmp_path / "missing.jpg")]))
    with pytest.raises(ConfigError, match="timeoutS"):
        cli_config(RequesterConfig(), parse_args(["--once", "--timeout", "0"]))
