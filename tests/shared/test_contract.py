"""Message contract v1: parsing, the seed's legacy form, limits, the shipped JSON Schemas, and the
clients' side: requests built in the documented wire form, results read back."""

from __future__ import annotations

import base64
import json
from importlib import resources
from pathlib import Path

import pytest

from ggvision.contract import (
    ENVELOPE_SCAN_BYTES,
    MAX_INLINE_IMAGE_BYTES,
    MAX_REQUEST_BYTES,
    DataImage,
    ErrorCode,
    FrameImage,
    FrameRef,
    InferenceResult,
    ModelInfo,
    PathImage,
    Prediction,
    RequestError,
    ResultError,
    Timing,
    decode_payload,
    error_result,
    frame_image,
    inline_bytes,
    inline_image,
    json_schemas,
    parse_request,
    path_image,
    peek_envelope,
    read_result,
    request_json,
    result_bytes,
    result_json,
    scan_envelope,
    seed_request_json,
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


@pytest.mark.parametrize(
    ("raw", "found"),
    [
        pytest.param(b'{"id": "r1", "image": {"path": "\xff"}}', {"id": "r1"}, id="not-utf8"),
        pytest.param(b'{"id": "r2", "image": ' + b"[" * 100_000, {"id": "r2"}, id="too-deep"),
        pytest.param(
            b'{"id": "r3", "image": {"data": "' + b"A" * MAX_REQUEST_BYTES + b'"}}',
            {"id": "r3"},
            id="oversized",
        ),
        pytest.param(
            b'{"image": {"id": "inner", "source": "in"}, "id": "outer"}',
            {"id": "outer"},
            id="nested-key-is-not-the-id",
        ),
        pytest.param(
            b'{"note": "\\"id\\": \\"fake\\"", "x": ["id", "fake"], "id": "real"}',
            {"id": "real"},
            id="id-inside-strings-and-arrays",
        ),
        pytest.param(
            b'{"id": "a\\"b\\u00e9", "reply_topic": "t/x", "source": "cam", "id": "second"}',
            {"id": 'a"b\u00e9', "reply_topic": "t/x", "source": "cam"},
            id="escapes-decoded-first-wins",
        ),
        pytest.param(b'{"\\u0069d": "escaped-name"}', {"id": "escaped-name"}, id="escaped-key"),
        pytest.param(b'{"id": 5, "source": "s"}', {"source": "s"}, id="id-not-a-string"),
        pytest.param(b'{"id": "\xff\xfe"}', {}, id="id-itself-not-utf8"),
        pytest.param(b'{"id": "cut off', {}, id="id-cut-off"),
        pytest.param(b'[{"id": "x"}]', {}, id="top-level-array"),
        pytest.param(b'{"a": {"b": 1}}} {"id": "after-the-object"}', {}, id="after-the-object"),
        pytest.param(
            b'{"data": "' + b"A" * ENVELOPE_SCAN_BYTES + b'", "id": "late"}',
            {},
            id="beyond-the-window",
        ),
    ],
)
def test_scan_envelope_finds_the_top_level_members_in_raw_bytes(
    raw: bytes, found: dict[str, str]
) -> None:
    assert scan_envelope(raw) == found


def test_undecodable_payloads_keep_their_id_in_peek_envelope() -> None:
    for raw in (b'{"id": "keep", "x": "\xff"}', b'{"id": "keep", "x": ' + b"[" * 100_000):
        with pytest.raises(RequestError):
            decode_payload(raw)
        assert peek_envelope(raw)[0] == "keep"
    too_long = b'{"id": "' + b"x" * 129 + b'", "x": "\xff"}'
    rid, _, _ = peek_envelope(too_long)
    assert len(rid) == 32 and rid != "x" * 129  # generated: the id breaks the contract


def test_shipped_json_schemas_match_the_models() -> None:
    shipped = resources.files("ggvision") / "schemas"
    for name, schema in json_schemas().items():
        assert json.loads((shipped / name).read_text()) == schema, (
            f"{name} is stale: regenerate it from ggvision.contract.json_schemas()"
        )


# --- the clients' side: building requests, reading results -------------------------------------


@pytest.mark.parametrize(
    ("built", "wire"),
    [
        (
            request_json("r1", path_image(Path("/img/cat.jpg")), top_k=3, source="requester"),
            '{"id": "r1", "image": {"path": "/img/cat.jpg"}, "top_k": 3, "source": "requester"}',
        ),
        (
            request_json("r2", inline_image(b"\xff\xd8abc")),
            '{"id": "r2", "image": {"data": "/9hhYmM="}}',
        ),
        (
            request_json(
                "cam-1", frame_image(FrameRef(ring="ggv-cam0", slot=3, seq=42)), source="cam0"
            ),
            '{"id": "cam-1", "image": {"frame": {"ring": "ggv-cam0", "slot": 3, "seq": 42}}, '
            '"source": "cam0"}',
        ),
        (
            request_json(
                "r3",
                path_image("/a.jpg"),
                top_k=1,
                threshold=0.5,
                reply_topic="local/result/me",
                source="s",
            ),
            '{"id": "r3", "image": {"path": "/a.jpg"}, "top_k": 1, "threshold": 0.5, '
            '"reply_topic": "local/result/me", "source": "s"}',
        ),
        (
            seed_request_json("r4", "/greengrass/images", "cat.jpeg", top_k=5, source="x"),
            '{"id": "r4", "image_dir": "/greengrass/images", "fname": "cat.jpeg", "top_k": 5, '
            '"source": "x"}',
        ),
    ],
)
def test_built_requests_are_the_documented_wire_form_and_parse(
    built: dict[str, object], wire: str
) -> None:
    assert json.dumps(built) == wire  # byte for byte: field order and omitted fields
    parsed = parse_request(built)
    assert parsed.id == built["id"]
    assert (parsed.top_k, parsed.source) == (built.get("top_k"), built.get("source"))


def test_a_built_request_with_a_bad_field_is_the_classifiers_to_reject() -> None:
    built = request_json("r1", path_image("/a.jpg"), top_k=5000)  # not validated when built
    with pytest.raises(RequestError) as info:
        parse_request(built)
    assert info.value.code is ErrorCode.INVALID_REQUEST


def _ok_result(rid: str) -> dict[str, object]:
    return result_json(
        InferenceResult(
            id=rid,
            status="ok",
            predictions=[Prediction(label="tabby", index=281, score=0.41)],
            model=ModelInfo(name="m", version="1", backend="tflite", precision="int8"),
            timing_ms=Timing(total=5.6),
            source="cam0",
        )
    )


@pytest.mark.parametrize("form", ["bytes", "str", "dict"])
def test_read_result_takes_every_message_form(form: str) -> None:
    obj = _ok_result("cam-7")
    text = json.dumps(obj)
    payload = {"bytes": text.encode(), "str": text, "dict": obj}[form]
    result = read_result(payload)  # type: ignore[arg-type]
    assert result is not None
    assert (result.id, result.status, result.source) == ("cam-7", "ok", "cam0")
    assert result.predictions[0] == Prediction(label="tabby", index=281, score=0.41)
    assert result_json(result) == obj  # read back as it was written


@pytest.mark.parametrize(
    "result",
    [
        InferenceResult(
            id="r1",
            status="ok",
            predictions=[
                Prediction(label="caf\u00e9 \u732b", index=3, score=1e-05),
                Prediction(label="tabby", index=281, score=0.912345),
            ],
            model=ModelInfo(name="m", version="1", backend="tflite", precision="int8"),
            timing_ms=Timing(queue=0.1, inference=5.0, total=6.123456789),
            source="cam0",
        ),
        error_result("r2", ErrorCode.OVERLOADED, "queue full", source="cam1"),
    ],
)
def test_result_bytes_is_the_json_of_result_json(result: InferenceResult) -> None:
    data = result_bytes(result)
    assert json.loads(data) == result_json(result)
    assert list(json.loads(data)) == list(result_json(result))  # the members in the same order
    assert read_result(data) == result


def test_read_result_of_an_error_answer() -> None:
    obj = result_json(error_result("r9", ErrorCode.OVERLOADED, "queue full"))
    result = read_result(json.dumps(obj).encode())
    assert result is not None and result.error is not None
    assert (result.status, result.error.code, result.predictions) == (
        "error",
        ErrorCode.OVERLOADED,
        [],
    )


@pytest.mark.parametrize(
    "payload",
    [b"[1, 2]", b'"text"', b"{}", b'{"id": 7, "status": "ok"}', b'{"status": "ok"}'],
)
def test_read_result_skips_what_is_not_a_result_with_an_id(payload: bytes) -> None:
    assert read_result(payload) is None


def test_read_result_skips_ids_it_does_not_want_without_validating_them() -> None:
    def mine(rid: str) -> bool:
        return rid.startswith("mine-")

    assert read_result(b'{"id": "theirs-1", "status": "bogus"}', mine) is None
    result = read_result(json.dumps(_ok_result("mine-1")), mine)
    assert result is not None and result.id == "mine-1"


@pytest.mark.parametrize(
    ("payload", "rid"),
    [
        (b"{not json", None),
        (b"\xff\xfe\x00", None),
        (b'{"id": "mine-1", "status": "maybe"}', "mine-1"),
        (b'{"id": "mine-2", "status": "ok", "predictions": [{"label": "x"}]}', "mine-2"),
        (
            b'{"id": "mine-3", "status": "error", "error": {"code": "NOPE", "message": ""}}',
            "mine-3",
        ),
    ],
)
def test_unreadable_results_say_whose_they_were(payload: bytes, rid: str | None) -> None:
    with pytest.raises(ResultError) as info:
        read_result(payload)
    assert info.value.rid == rid
    assert info.value.message
