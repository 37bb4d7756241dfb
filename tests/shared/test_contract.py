"""Message contract v1: parsing, the seed's legacy form, limits, and the shipped JSON Schemas."""

from __future__ import annotations

import base64
import json
from importlib import resources

import pytest

from ggvision.contract import (
    MAX_INLINE_IMAGE_BYTES,
    DataImage,
    ErrorCode,
    FrameImage,
    PathImage,
    RequestError,
    decode_payload,
    inline_bytes,
    json_schemas,
    parse_request,
    peek_envelope,
)


def test_full_request_parses() -> None:
    req = parse_request(
        {
            "id": "r1",
            "image": {"path": "/img/cat.jpg"},
            "top_k": 3,
            "threshold": 0.2,
            "reply_topic": "local/result/me",
            "source": "cam0",
        }
    )
    assert req.id == "r1"
    assert req.image == PathImage(path="/img/cat.jpg")
    assert (req.top_k, req.threshold, req.reply_topic, req.source) == (
        3,
        0.2,
        "local/result/me",
        "cam0",
    )


def test_seed_form_is_accepted_and_an_id_generated() -> None:
    req = parse_request({"image_dir": "/greengrass/images", "fname": "cat.jpeg"})
    assert req.image == PathImage(path="/greengrass/images/cat.jpeg")
    assert len(req.id) == 32


def test_frame_and_inline_forms() -> None:
    frame = parse_request({"image": {"frame": {"ring": "ggv-cam0", "slot": 3, "seq": 42}}})
    assert isinstance(frame.image, FrameImage)
    assert frame.is_frame
    data = parse_request({"image": {"data": base64.b64encode(b"\xff\xd8abc").decode()}})
    assert isinstance(data.image, DataImage)
    assert inline_bytes(data.image) == b"\xff\xd8abc"


@pytest.mark.parametrize(
    "bad",
    [
        {"image": {}},
        {"image": {"path": ""}},
        {"image": {"path": "/a"}, "top_k": 0},
        {"image": {"path": "/a"}, "top_k": "5"},
        {"image": {"path": "/a"}, "threshold": 1.5},
        {"image": {"path": "/a"}, "unexpected": 1},
        {"image": {"path": "/a", "data": "AAAA"}},
        {"image": {"frame": {"ring": "../etc", "slot": 0, "seq": 1}}},
        {"image": {"frame": {"ring": "r", "slot": -1, "seq": 1}}},
        {"id": 7, "image": {"path": "/a"}},
        {"image_dir": "/a"},
        {"image_dir": "/a", "fname": "b", "image": {"path": "/c"}},
    ],
)
def test_invalid_requests_are_invalid_request(bad: dict[str, object]) -> None:
    with pytest.raises(RequestError) as info:
        parse_request(bad)
    assert info.value.code is ErrorCode.INVALID_REQUEST


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"{not json", ErrorCode.INVALID_REQUEST),
        (b"\xff\xfe\x00", ErrorCode.INVALID_REQUEST),
        (b"[1, 2]", ErrorCode.INVALID_REQUEST),
        (b"x" * (300 * 1024), ErrorCode.IMAGE_TOO_LARGE),
    ],
)
def test_undecodable_payloads(payload: bytes, code: ErrorCode) -> None:
    with pytest.raises(RequestError) as info:
        decode_payload(payload)
    assert info.value.code is code


def test_inline_image_limit_is_enforced_before_and_after_decoding() -> None:
    big = base64.b64encode(b"x" * (MAX_INLINE_IMAGE_BYTES + 1)).decode()
    with pytest.raises(RequestError) as info:
        parse_request({"image": {"data": big}})
    assert info.value.code is ErrorCode.IMAGE_TOO_LARGE
    with pytest.raises(RequestError) as bad:
        inline_bytes(DataImage(data="!!!notbase64"))
    assert bad.value.code is ErrorCode.INVALID_REQUEST


def test_peek_envelope_recovers_what_it_can_for_the_error_reply() -> None:
    assert peek_envelope({"id": "keep", "reply_topic": "t", "source": "s"}) == ("keep", "t", "s")
    rid, reply, source = peek_envelope({"id": 5})
    assert len(rid) == 32 and reply is None and source is None


def test_shipped_json_schemas_match_the_models() -> None:
    shipped = resources.files("ggvision") / "schemas"
    for name, schema in json_schemas().items():
        assert json.loads((shipped / name).read_text()) == schema, (
            f"{name} is stale: regenerate it from ggvision.contract.json_schemas()"
        )
