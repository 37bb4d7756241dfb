"""Message contract v1 between requesters/cameras and the classifier (``docs/messages.md``).

Request (on ``local/inference``)::

    {"id"?: str, "image": {"path": str} | {"data": base64} | {"frame": FrameRef},
     "top_k"?: int, "threshold"?: float, "reply_topic"?: str, "source"?: str}

A frame reference may carry ``planes``: the same frame already fitted to a model's input
(:class:`PlaneSpec`), a backward-compatible extension (``docs/messages.md``, "Frame planes").
The seed's ``{"image_dir": ..., "fname": ...}`` form is accepted too. A missing id is generated
and echoed; an error reply carries the request's own id whenever one can be found, even in bytes
that cannot be decoded (:func:`peek_envelope`, :func:`scan_envelope`). Result (on
``local/result`` or ``reply_topic``)::

    {"id", "status": "ok"|"error", "predictions": [{"label", "index", "score"}],
     "model": {"name", "version", "backend", "precision"},
     "timing_ms": {"queue", "decode", "preprocess", "inference", "total"},
     "source"?, "error"?: {"code", "message"}, "output"?: {...}}

``output`` carries the answer of a model whose task is not classification (its shape is the
task's); a classification result has none. A detector's result (on ``local/detect`` requests)
says ``"task": "detect"`` and carries ``detections``: ``[{"label", "index", "score", "box":
{"xmin", "ymin", "xmax", "ymax"}}]``, boxes in 0..1 of the original image, best first.

The classifier reads requests with :func:`decode_payload` and :func:`parse_request` and answers
with :func:`result_bytes` (:func:`result_json`: the same as a dict); clients (requester, camera,
benchmarks) build requests with :func:`request_json` (or :func:`seed_request_json`) and read
answers with :func:`read_result`.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import uuid
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ggvision.errors import GgvisionError

SCHEMA_VERSION = 1
MAX_INLINE_IMAGE_BYTES = 128 * 1024
MAX_REQUEST_BYTES = 256 * 1024  # inline base64 of 128 KB plus the envelope
MAX_ID_LENGTH = 128
MAX_TOP_K = 1000


class ErrorCode(StrEnum):
    INVALID_REQUEST = "INVALID_REQUEST"
    IMAGE_NOT_FOUND = "IMAGE_NOT_FOUND"
    PATH_NOT_ALLOWED = "PATH_NOT_ALLOWED"
    IMAGE_TOO_LARGE = "IMAGE_TOO_LARGE"
    IMAGE_DECODE_FAILED = "IMAGE_DECODE_FAILED"
    OVERLOADED = "OVERLOADED"
    MODEL_UNAVAILABLE = "MODEL_UNAVAILABLE"
    INTERNAL = "INTERNAL"


class RequestError(GgvisionError):
    """A request cannot be served; carries the contract error code for the reply."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


RingName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
MAX_PLANES = 4  # planes one frame reference may carry


class PlaneSpec(_Strict):
    """What a frame plane holds: the full frame fitted to ``width`` x ``height`` as a model's
    preprocessing does it (``crop``: a centre square of ``crop_fraction`` of the short side,
    then resized; ``stretch``: the whole frame resized; ``letterbox``: the whole frame resized
    with its aspect kept, centred on ``fill``), with ``interpolation``, in ``color`` order,
    HxWx3 uint8. A consumer uses a plane only when its spec equals the one its model wants."""

    width: Annotated[int, Field(ge=1, le=4096)]
    height: Annotated[int, Field(ge=1, le=4096)]
    fit: Literal["crop", "stretch", "letterbox"]
    crop_fraction: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    interpolation: Literal["bicubic", "bilinear", "nearest"] = "bicubic"
    color: Literal["RGB", "BGR"] = "RGB"
    fill: Annotated[int, Field(ge=0, le=255)] = 0


class FramePlane(_Strict):
    """The same frame made at a model's input size (:class:`PlaneSpec`), in a ring of its own."""

    ring: RingName
    slot: Annotated[int, Field(ge=0, lt=4096)]
    seq: Annotated[int, Field(ge=0)]
    spec: PlaneSpec


class FrameRef(_Strict):
    """A frame in a shared-memory ring written by CameraSource (:mod:`ggvision.frames`);
    ``planes``: the same frame already fitted to the consumers' model inputs (optional, v1
    extension: a consumer whose model wants none of them reads the full frame)."""

    ring: RingName
    slot: Annotated[int, Field(ge=0, lt=4096)]
    seq: Annotated[int, Field(ge=0)]
    planes: Annotated[list[FramePlane], Field(max_length=MAX_PLANES)] | None = None

    def plane(self, spec: PlaneSpec | None) -> FramePlane | None:
        """The plane made as ``spec`` says, if the reference carries one."""
        if spec is None or not self.planes:
            return None
        return next((p for p in self.planes if p.spec == spec), None)


class PathImage(_Strict):
    path: Annotated[str, Field(min_length=1, max_length=4096)]


class DataImage(_Strict):
    data: Annotated[str, Field(min_length=1, description="base64 of an encoded image")]


class FrameImage(_Strict):
    frame: FrameRef


class InferenceRequest(_Strict):
    id: Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]
    image: PathImage | DataImage | FrameImage
    top_k: Annotated[int, Field(ge=1, le=MAX_TOP_K)] | None = None
    threshold: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    reply_topic: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    source: Annotated[str, Field(max_length=256)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _legacy_form(cls, data: Any) -> Any:
        """Accept the seed's ``{"image_dir", "fname"}`` request."""
        if isinstance(data, dict) and ("image_dir" in data or "fname" in data):
            data = dict(data)
            image_dir, fname = data.pop("image_dir", None), data.pop("fname", None)
            if "image" in data:
                raise ValueError("give either image or image_dir/fname, not both")
            if not isinstance(image_dir, str) or not isinstance(fname, str) or not fname:
                raise ValueError("image_dir and fname must both be non-empty strings")
            data["image"] = {"path": os.path.join(image_dir, fname)}
        return data

    @property
    def is_frame(self) -> bool:
        return isinstance(self.image, FrameImage)


class Prediction(BaseModel):
    label: str
    index: int
    score: float


class Box(BaseModel):
    """A box in 0..1 of the original image (after its EXIF rotation): x to the right, y down."""

    xmin: float
    ymin: float
    xmax: float
    ymax: float


class Detection(BaseModel):
    label: str
    index: int
    score: float
    box: Box


class ModelInfo(BaseModel):
    name: str
    version: str
    backend: str
    precision: str


class Timing(BaseModel):
    queue: float = 0.0
    decode: float = 0.0
    preprocess: float = 0.0
    inference: float = 0.0
    total: float = 0.0


class ErrorInfo(BaseModel):
    code: ErrorCode
    message: str


class InferenceResult(BaseModel):
    id: str
    status: Literal["ok", "error"]
    predictions: list[Prediction] = Field(default_factory=list)
    # The answer of a task other than classification (its own shape, e.g. {"mean_colour": ...});
    # absent from classification results.
    output: dict[str, Any] | None = None
    model: ModelInfo | None = None
    timing_ms: Timing = Field(default_factory=Timing)
    source: str | None = None
    error: ErrorInfo | None = None
    # What answered: absent for a classifier, "detect" for a detector (errors included).
    task: str | None = None
    # A detector's boxes, best first (absent from other results).
    detections: list[Detection] | None = None


def new_id() -> str:
    return uuid.uuid4().hex


# How far :func:`scan_envelope` reads a request it cannot decode: its first 64 KB, and in them at
# most 4,096 JSON tokens (strings, brackets), so that the scan costs little even on a hostile one.
ENVELOPE_SCAN_BYTES = 64 * 1024
ENVELOPE_SCAN_TOKENS = 4096
_ENVELOPE_FIELDS = ("id", "reply_topic", "source")
_RAW_FIELDS = frozenset(f'"{name}"'.encode() for name in _ENVELOPE_FIELDS)
_STRING = rb'"[^"\\]*(?:\\.[^"\\]*)*"'
# One token of JSON text: a string followed by a colon (an object key), any other string, a run of
# opening brackets, a run of closing ones, or a quote that opens a string the window cuts off.
_TOKEN = re.compile(rb"(" + _STRING + rb")\s*:|" + _STRING + rb"|([\[{]+)|([\]}]+)|(\")")
_VALUE = re.compile(rb"\s*(" + _STRING + rb")")


def _literal(raw: bytes) -> str | None:
    """A JSON string literal (quotes included) -> its text; None when it is not valid UTF-8/JSON."""
    try:
        text = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return text if isinstance(text, str) else None


def scan_envelope(raw: bytes | bytearray | str) -> dict[str, str]:
    """The top-level string members ``id``, ``reply_topic`` and ``source`` of a request that
    cannot be decoded (not UTF-8, nested too deeply, too large, not JSON), found by a bounded scan
    of its raw bytes.

    The rule (``docs/messages.md``): within the first :data:`ENVELOPE_SCAN_BYTES` bytes and
    :data:`ENVELOPE_SCAN_TOKENS` tokens, the first member of that name directly inside the
    top-level object whose value is a complete JSON string (escapes decoded; its own bytes valid
    UTF-8) counts. Members of nested objects, strings that merely contain ``"id"``, and a value
    cut off by the window do not. The scan stops at a string the window cuts off."""
    if isinstance(raw, str):
        raw = raw[:ENVELOPE_SCAN_BYTES].encode("utf-8", "surrogatepass")
    window = bytes(raw[:ENVELOPE_SCAN_BYTES])
    start = len(window) - len(window.lstrip())
    if window[start : start + 1] != b"{":
        return {}
    found: dict[str, str] = {}
    depth = 0
    pos = start
    for _ in range(ENVELOPE_SCAN_TOKENS):
        m = _TOKEN.search(window, pos)
        if m is None or m.group(4) is not None:
            break
        pos = m.end()
        key, opening, closing = m.group(1), m.group(2), m.group(3)
        if opening is not None:
            depth += len(opening)
        elif closing is not None:
            depth -= len(closing)
            if depth <= 0:
                break  # the top-level object ended
        elif key is not None and depth == 1 and len(key) <= 32:
            name = key[1:-1].decode("ascii") if key in _RAW_FIELDS else None
            if name is None and b"\\" in key:  # an escaped name, e.g. "\u0069d"
                name = _literal(key)
            value = _VALUE.match(window, pos)
            if name in _ENVELOPE_FIELDS and name not in found and value is not None:
                text = _literal(value.group(1))
                if text is not None:
                    found[name] = text
                pos = value.end()
                if len(found) == len(_ENVELOPE_FIELDS):
                    break
    return found


def peek_envelope(raw: Any) -> tuple[str, str | None, str | None]:
    """Best-effort (id, reply_topic, source) of a possibly invalid request, for its error reply:
    ``raw`` is the decoded request, or its undecodable bytes/str (then :func:`scan_envelope`
    finds what it can). An id is generated only when none of 1 to 128 characters can be found."""
    if isinstance(raw, bytes | bytearray | str):
        raw = scan_envelope(raw)
    rid, reply, source = None, None, None
    if isinstance(raw, dict):
        v = raw.get("id")
        if isinstance(v, str) and 0 < len(v) <= MAX_ID_LENGTH:
            rid = v
        v = raw.get("reply_topic")
        if isinstance(v, str) and 0 < len(v) <= 256:
            reply = v
        v = raw.get("source")
        if isinstance(v, str) and len(v) <= 256:
            source = v
    return rid or new_id(), reply, source


def decode_payload(payload: bytes | str | dict[str, Any]) -> dict[str, Any]:
    """Bytes/str (UTF-8 JSON) or an already-decoded JSON message -> dict; RequestError otherwise."""
    if isinstance(payload, dict):
        return payload
    if isinstance(payload, bytes | bytearray):
        if len(payload) > MAX_REQUEST_BYTES:
            raise RequestError(
                ErrorCode.IMAGE_TOO_LARGE,
                f"request is {len(payload)} bytes; the limit is {MAX_REQUEST_BYTES}",
            )
        try:
            payload = bytes(payload).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RequestError(ErrorCode.INVALID_REQUEST, "request is not UTF-8") from exc
    try:
        obj = json.loads(payload)
    except ValueError as exc:
        raise RequestError(ErrorCode.INVALID_REQUEST, f"request is not valid JSON: {exc}") from exc
    except RecursionError as exc:  # e.g. 100,000 nested arrays
        raise RequestError(ErrorCode.INVALID_REQUEST, "request is nested too deeply") from exc
    if not isinstance(obj, dict):
        raise RequestError(ErrorCode.INVALID_REQUEST, "request must be a JSON object")
    return obj


def parse_request(obj: dict[str, Any]) -> InferenceRequest:
    """Validate a decoded request (generating an id when missing)."""
    if "id" not in obj or obj["id"] is None:
        obj = {**obj, "id": new_id()}
    try:
        req = InferenceRequest.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "request"
        raise RequestError(ErrorCode.INVALID_REQUEST, f"{where}: {first.get('msg')}") from exc
    if isinstance(req.image, DataImage):
        # The base64 length tells the decoded size: check before decoding.
        data = req.image.data
        if len(data) * 3 // 4 - data[-2:].count("=") > MAX_INLINE_IMAGE_BYTES:
            raise RequestError(
                ErrorCode.IMAGE_TOO_LARGE, f"inline image exceeds {MAX_INLINE_IMAGE_BYTES} bytes"
            )
    return req


def inline_bytes(image: DataImage) -> bytes:
    try:
        data = base64.b64decode(image.data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestError(ErrorCode.INVALID_REQUEST, "image.data is not valid base64") from exc
    if len(data) > MAX_INLINE_IMAGE_BYTES:
        raise RequestError(
            ErrorCode.IMAGE_TOO_LARGE,
            f"inline image is {len(data)} bytes; the limit is {MAX_INLINE_IMAGE_BYTES}",
        )
    return data


def error_result(
    rid: str,
    code: ErrorCode,
    message: str,
    *,
    source: str | None = None,
    model: ModelInfo | None = None,
    timing: Timing | None = None,
) -> InferenceResult:
    return InferenceResult(
        id=rid,
        status="error",
        source=source,
        model=model,
        timing_ms=timing or Timing(),
        error=ErrorInfo(code=code, message=message),
    )


def result_json(result: InferenceResult) -> dict[str, Any]:
    return result.model_dump(mode="json", exclude_none=True)


def result_bytes(result: InferenceResult) -> bytes:
    """``result`` as the UTF-8 JSON its message carries: the members of :func:`result_json`,
    serialized compactly in one step by pydantic's own serializer (no dict built first; about a
    fifth of the CPU of ``json.dumps(result_json(result))``). Non-ASCII text is written as UTF-8,
    not as ``\\u`` escapes: the same JSON value."""
    data: bytes = InferenceResult.__pydantic_serializer__.to_json(result, exclude_none=True)
    return data


# --- the clients' side: building requests, reading results ---------------------------------------
RequestImage = PathImage | DataImage | FrameImage  # the three forms of a request's "image"


def path_image(path: str | os.PathLike[str]) -> PathImage:
    """An image the classifier reads from its disk (an absolute path in ``allowedDirectories``)."""
    return PathImage(path=os.fspath(path))


def inline_image(data: bytes) -> DataImage:
    """An encoded image (JPEG, PNG, ...) carried in the request, base64; at most 128 KB."""
    return DataImage(data=base64.b64encode(data).decode("ascii"))


def frame_image(ref: FrameRef) -> FrameImage:
    """A frame in a shared-memory ring (:mod:`ggvision.frames`)."""
    return FrameImage(frame=ref)


def request_json(
    rid: str,
    image: RequestImage,
    *,
    top_k: int | None = None,
    threshold: float | None = None,
    reply_topic: str | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """A request as it goes on the bus (``docs/messages.md``): the fields given, in the order of
    :class:`InferenceRequest`. Not validated here: the classifier answers a bad one with
    ``INVALID_REQUEST``, as it would anybody's."""
    request: dict[str, Any] = {"id": rid, "image": image.model_dump(exclude_none=True)}
    for key, value in (
        ("top_k", top_k),
        ("threshold", threshold),
        ("reply_topic", reply_topic),
        ("source", source),
    ):
        if value is not None:
            request[key] = value
    return request


def seed_request_json(
    rid: str, image_dir: str, fname: str, *, top_k: int | None = None, source: str | None = None
) -> dict[str, Any]:
    """A request in the seed's form ``{"image_dir", "fname"}`` (the classifier still accepts it)."""
    request: dict[str, Any] = {"id": rid, "image_dir": image_dir, "fname": fname}
    if top_k is not None:
        request["top_k"] = top_k
    if source is not None:
        request["source"] = source
    return request


class ResultError(GgvisionError):
    """A message on a result topic that cannot be read: not JSON (``rid`` None), or a result for
    ``rid`` that does not follow the contract."""

    def __init__(self, message: str, rid: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.rid = rid


def read_result(
    payload: bytes | str | dict[str, Any], wanted: Callable[[str], bool] | None = None
) -> InferenceResult | None:
    """The result in a message from a result topic, or None when it is not for this client: not
    a JSON object with a string ``id``, or an id that ``wanted`` declines (another client's; such
    messages are not validated). ResultError when it is not JSON, or ours and malformed."""
    if isinstance(payload, dict):
        obj: Any = payload
    else:
        try:
            obj = json.loads(payload)
        except (ValueError, RecursionError) as exc:
            raise ResultError(f"not JSON: {exc}") from exc
    rid = obj.get("id") if isinstance(obj, dict) else None
    if not isinstance(rid, str) or (wanted is not None and not wanted(rid)):
        return None
    try:
        return InferenceResult.model_validate(obj)
    except ValidationError as exc:
        raise ResultError(str(exc.errors()[0].get("msg")), rid) from exc


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schemas shipped in ``ggvision/schemas`` (kept in sync by a test)."""
    return {
        "inference-request.v1.json": InferenceRequest.model_json_schema(),
        "inference-result.v1.json": InferenceResult.model_json_schema(),
    }
