"""A corpus of malformed requests through the real client against the real classifier on the
default model: each gets exactly one structured reply carrying its id (or, when no id can be
read from it, a generated 32-hex id), and the classifier keeps serving."""

from __future__ import annotations

import base64
import io
import os
import struct
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from ggvision.frames import FrameWriter
from tests.classifier.test_service import _result

from .conftest import Running

GENERATED = "<generated>"  # the reply's id is a fresh 32-hex id: none could be read
OK = "ok"

Payload = dict[str, Any] | bytes


def encode(img: Image.Image, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def photo(mode: str = "RGB", size: tuple[int, int] = (320, 240)) -> Image.Image:
    rng = np.random.default_rng(7)
    rgb = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    return rgb.convert(mode)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` (a decompression bomb's shape)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64, 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def png_bomb() -> bytes:
    """A real deflate bomb: 12000 x 12000 grey pixels of zeros in a few hundred KB at most."""
    width, height = 12000, 12000
    raw = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    body = b"".join(raw.compress(row) for _ in range(height)) + raw.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", body)
        + png_chunk(b"IEND", b"")
    )


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small JPEG whose SOF0 header is patched to claim ``width`` x ``height``."""
    data = bytearray(encode(photo(size=(16, 16)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


@dataclass(frozen=True)
class Env:
    images: Path
    frames: Path
    outside: Path  # a readable directory the classifier may not read

    def file(self, name: str, data: bytes) -> str:
        path = self.images / name
        path.write_bytes(data)
        return str(path)


def by_path(rid: str, make: Callable[[Env], str]) -> Callable[[Env], Payload]:
    return lambda env: {"id": rid, "image": {"path": make(env)}}


def inline(rid: str, data: bytes) -> Callable[[Env], Payload]:
    return lambda env: {"id": rid, "image": {"data": base64.b64encode(data).decode()}}


def const(payload: Payload) -> Callable[[Env], Payload]:
    return lambda env: payload


def symlink(env: Env, name: str, target: str) -> str:
    link = env.images / name
    if not link.is_symlink():
        link.symlink_to(target)
    return str(link)


def fifo(env: Env) -> str:
    path = env.images / "a.fifo"
    if not path.exists():
        os.mkfifo(path)
    return str(path)


def frame_request(rid: str, ring: str, slot: int, seq: int) -> dict[str, Any]:
    return {"id": rid, "image": {"frame": {"ring": ring, "slot": slot, "seq": seq}}}


def garbage_ring(env: Env) -> Payload:
    (env.frames / "junk-ring").write_bytes(b"GGVRING0" + b"\x00" * 200)
    return frame_request("frame-junk", "junk-ring", 0, 2)


def lying_ring(env: Env) -> Payload:
    """A ring header claiming far more slots than the file holds."""
    (env.frames / "lying-ring").write_bytes(struct.pack("<8sII48x", b"GGVRING1", 4000, 10**6))
    return frame_request("frame-lying", "lying-ring", 3999, 2)


JPEG = encode(photo(), "JPEG", quality=90)
PNG = encode(photo(), "PNG")
DEEP = 100_000

# (case id, payload builder, expected reply id, acceptable codes or {"ok"})
CORPUS: list[tuple[str, Callable[[Env], Payload], str, set[str]]] = [
    # --- not JSON / not an object ---------------------------------------------------------------
    ("not-json", const(b"{not json"), GENERATED, {"INVALID_REQUEST"}),
    ("not-utf8", const(b'{"id": "x\xff\xfe"}'), GENERATED, {"INVALID_REQUEST"}),
    (
        "not-utf8-elsewhere",
        const(b'{"id": "utf8", "image": {"path": "/x/\xff.jpg"}}'),
        "utf8",  # only the id's own bytes must be UTF-8
        {"INVALID_REQUEST"},
    ),
    ("binary-noise", const(bytes(range(256))), GENERATED, {"INVALID_REQUEST"}),
    ("empty-payload", const(b""), GENERATED, {"INVALID_REQUEST"}),
    ("json-array", const(b"[1, 2, 3]"), GENERATED, {"INVALID_REQUEST"}),
    ("json-string", const(b'"hello"'), GENERATED, {"INVALID_REQUEST"}),
    ("json-null", const(b"null"), GENERATED, {"INVALID_REQUEST"}),
    ("deep-array", const(b"[" * DEEP + b"]" * DEEP), GENERATED, {"INVALID_REQUEST"}),
    (
        "deep-object",
        const(b'{"id":"deep","image":' + b'{"a":' * 40_000 + b"1" + b"}" * 40_000 + b"}"),
        "deep",  # found by the raw scan: the id precedes the nesting
        {"INVALID_REQUEST"},
    ),
    (
        "nan-threshold",
        const(b'{"id":"nan","image":{"path":"/x"},"threshold":NaN}'),
        "nan",
        {"INVALID_REQUEST"},
    ),
    (
        "oversized-payload",
        const(b'{"id":"big","pad":"' + b"x" * 300_000 + b'"}'),
        "big",  # found by the raw scan of the first 64 KB
        {"IMAGE_TOO_LARGE"},
    ),
    # --- missing, extra and mistyped keys --------------------------------------------------------
    ("missing-image", const({"id": "missing-image"}), "missing-image", {"INVALID_REQUEST"}),
    (
        "image-string",
        const({"id": "image-string", "image": "/a.jpg"}),
        "image-string",
        {"INVALID_REQUEST"},
    ),
    ("image-empty", const({"id": "image-empty", "image": {}}), "image-empty", {"INVALID_REQUEST"}),
    (
        "image-two-forms",
        const({"id": "two", "image": {"path": "/a", "data": "AAAA"}}),
        "two",
        {"INVALID_REQUEST"},
    ),
    (
        "extra-root-key",
        const({"id": "extra", "image": {"path": "/a"}, "colour": 1}),
        "extra",
        {"INVALID_REQUEST"},
    ),
    (
        "extra-image-key",
        const({"id": "extra2", "image": {"path": "/a", "x": 1}}),
        "extra2",
        {"INVALID_REQUEST"},
    ),
    ("id-int", const({"id": 5, "image": {"path": "/a"}}), GENERATED, {"INVALID_REQUEST"}),
    ("id-empty", const({"id": "", "image": {"path": "/a"}}), GENERATED, {"INVALID_REQUEST"}),
    (
        "id-huge",
        const({"id": "i" * 10_000, "image": {"path": "/a"}}),
        GENERATED,
        {"INVALID_REQUEST"},
    ),
    (
        "top-k-zero",
        const({"id": "k0", "image": {"path": "/a"}, "top_k": 0}),
        "k0",
        {"INVALID_REQUEST"},
    ),
    (
        "top-k-huge",
        const({"id": "k9", "image": {"path": "/a"}, "top_k": 10**12}),
        "k9",
        {"INVALID_REQUEST"},
    ),
    (
        "top-k-string",
        const({"id": "ks", "image": {"path": "/a"}, "top_k": "5"}),
        "ks",
        {"INVALID_REQUEST"},
    ),
    (
        "top-k-bool",
        const({"id": "kb", "image": {"path": "/a"}, "top_k": True}),
        "kb",
        {"INVALID_REQUEST"},
    ),
    (
        "threshold-range",
        const({"id": "t2", "image": {"path": "/a"}, "threshold": 2.0}),
        "t2",
        {"INVALID_REQUEST"},
    ),
    (
        "source-huge",
        const({"id": "src", "image": {"path": "/a"}, "source": "s" * 10_000}),
        "src",
        {"INVALID_REQUEST"},
    ),
    (
        "reply-topic-foreign",
        const({"id": "rt", "image": {"path": "/a"}, "reply_topic": "x/y"}),
        "rt",
        {"INVALID_REQUEST"},
    ),
    (
        "reply-topic-wildcard",
        const({"id": "rw", "image": {"path": "/a"}, "reply_topic": "#"}),
        "rw",
        {"INVALID_REQUEST"},
    ),
    (
        "legacy-mixed",
        const({"id": "lm", "image_dir": 3, "fname": "a.jpg"}),
        "lm",
        {"INVALID_REQUEST"},
    ),
    (
        "legacy-and-image",
        const({"id": "lb", "image_dir": "/", "fname": "a", "image": {}}),
        "lb",
        {"INVALID_REQUEST"},
    ),
    # --- paths --------------------------------------------------------------------------------
    (
        "path-huge",
        const({"id": "ph", "image": {"path": "/" + "a" * 5000}}),
        "ph",
        {"INVALID_REQUEST"},
    ),
    ("path-nul", by_path("pn", lambda e: str(e.images / "a\x00.jpg")), "pn", {"INVALID_REQUEST"}),
    (
        "path-relative",
        const({"id": "pr", "image": {"path": "chelsea.jpg"}}),
        "pr",
        {"PATH_NOT_ALLOWED"},
    ),
    (
        "path-traversal",
        by_path("pt", lambda e: f"{e.images}/../../etc/passwd"),
        "pt",
        {"PATH_NOT_ALLOWED"},
    ),
    (
        "path-outside",
        by_path("po", lambda e: str(e.outside / "ok.jpg")),
        "po",
        {"PATH_NOT_ALLOWED"},
    ),
    (
        "symlink-escape",
        by_path("se", lambda e: symlink(e, "esc.jpg", str(e.outside / "ok.jpg"))),
        "se",
        {"PATH_NOT_ALLOWED"},
    ),
    (
        "symlink-device",
        by_path("sd", lambda e: symlink(e, "zero.jpg", "/dev/zero")),
        "sd",
        {"PATH_NOT_ALLOWED"},
    ),
    (
        "symlink-dangling",
        by_path("sg", lambda e: symlink(e, "gone.jpg", str(e.images / "no"))),
        "sg",
        {"IMAGE_NOT_FOUND"},
    ),
    ("nonexistent", by_path("ne", lambda e: str(e.images / "nope.jpg")), "ne", {"IMAGE_NOT_FOUND"}),
    ("directory", by_path("dir", lambda e: str(e.images)), "dir", {"IMAGE_NOT_FOUND"}),
    ("fifo", by_path("fifo", fifo), "fifo", {"IMAGE_NOT_FOUND"}),
    # --- files that are not (good) images -----------------------------------------------------
    ("zero-bytes", by_path("z", lambda e: e.file("z.jpg", b"")), "z", {"IMAGE_DECODE_FAILED"}),
    (
        "text-as-jpeg",
        by_path("txt", lambda e: e.file("t.jpg", b"hello " * 100)),
        "txt",
        {"IMAGE_DECODE_FAILED"},
    ),
    (
        "truncated-jpeg",
        by_path("tj", lambda e: e.file("tj.jpg", JPEG[: len(JPEG) // 3])),
        "tj",
        {"IMAGE_DECODE_FAILED"},
    ),
    (
        "corrupt-jpeg",
        by_path("cj", lambda e: e.file("cj.jpg", JPEG[:200] + os.urandom(4000))),
        "cj",
        {"IMAGE_DECODE_FAILED", OK},
    ),
    (
        "jpeg-header-only",
        by_path("jh", lambda e: e.file("jh.jpg", b"\xff\xd8\xff\xe0")),
        "jh",
        {"IMAGE_DECODE_FAILED"},
    ),
    (
        "truncated-png",
        by_path("tp", lambda e: e.file("tp.png", PNG[: len(PNG) // 2])),
        "tp",
        {"IMAGE_DECODE_FAILED"},
    ),
    (
        "corrupt-png",
        by_path("cp", lambda e: e.file("cp.png", PNG[:60] + b"\x00" * 500 + PNG[560:])),
        "cp",
        {"IMAGE_DECODE_FAILED"},
    ),
    (
        "png-bomb-header",
        by_path("pb", lambda e: e.file("pb.png", png_claiming(100_000, 100_000))),
        "pb",
        {"IMAGE_TOO_LARGE"},
    ),
    (
        "png-deflate-bomb",
        by_path("db", lambda e: e.file("db.png", png_bomb())),
        "db",
        {"IMAGE_TOO_LARGE"},
    ),
    (
        "png-over-max-pixels",
        by_path("mp", lambda e: e.file("mp.png", png_claiming(8000, 8000))),
        "mp",
        {"IMAGE_TOO_LARGE"},
    ),
    (
        "jpeg-enormous",
        by_path("je", lambda e: e.file("je.jpg", jpeg_claiming(65500, 65500))),
        "je",
        {"IMAGE_TOO_LARGE"},
    ),
    (
        "one-pixel",
        by_path("1x1", lambda e: e.file("1.png", encode(photo(size=(1, 1)), "PNG"))),
        "1x1",
        {"IMAGE_DECODE_FAILED"},
    ),
    (
        "one-pixel-wide",
        by_path("1xn", lambda e: e.file("w.png", encode(photo(size=(1, 900)), "PNG"))),
        "1xn",
        {"IMAGE_DECODE_FAILED"},
    ),
    (
        "inline-not-base64",
        const({"id": "ib", "image": {"data": "not base64!"}}),
        "ib",
        {"INVALID_REQUEST"},
    ),
    ("inline-empty", const({"id": "ie", "image": {"data": ""}}), "ie", {"INVALID_REQUEST"}),
    ("inline-garbage", inline("ig", os.urandom(500)), "ig", {"IMAGE_DECODE_FAILED"}),
    ("inline-too-large", inline("il", os.urandom(200_000)), "il", {"IMAGE_TOO_LARGE"}),
    ("inline-bomb", inline("ibomb", png_claiming(60_000, 60_000)), "ibomb", {"IMAGE_TOO_LARGE"}),
    # --- unusual but valid images: served ----------------------------------------------------
    ("grey-jpeg", by_path("L", lambda e: e.file("L.jpg", encode(photo("L"), "JPEG"))), "L", {OK}),
    (
        "rgba-png",
        by_path("RGBA", lambda e: e.file("a.png", encode(photo("RGBA"), "PNG"))),
        "RGBA",
        {OK},
    ),
    ("palette-png", by_path("P", lambda e: e.file("p.png", encode(photo("P"), "PNG"))), "P", {OK}),
    (
        "cmyk-jpeg",
        by_path("CMYK", lambda e: e.file("c.jpg", encode(photo("CMYK"), "JPEG"))),
        "CMYK",
        {OK},
    ),
    ("bilevel-png", by_path("1", lambda e: e.file("b.png", encode(photo("1"), "PNG"))), "1", {OK}),
    (
        "16-bit-png",
        by_path(
            "I16",
            lambda e: e.file(
                "16.png",
                encode(Image.fromarray(np.full((240, 320), 40000, dtype=np.uint16)), "PNG"),
            ),
        ),
        "I16",
        {OK},
    ),
    (
        "tiny-2x2",
        by_path("2x2", lambda e: e.file("2.png", encode(photo(size=(2, 2)), "PNG"))),
        "2x2",
        {OK},
    ),
    # --- camera frames ------------------------------------------------------------------------
    (
        "frame-no-ring",
        const(frame_request("fnr", "no-such-ring", 0, 2)),
        "fnr",
        {"IMAGE_NOT_FOUND"},
    ),
    ("frame-bad-name", const(frame_request("fbn", "../etc", 0, 2)), "fbn", {"INVALID_REQUEST"}),
    ("frame-slot-range", const(frame_request("fsr", "cam", 5000, 2)), "fsr", {"INVALID_REQUEST"}),
    ("frame-negative-seq", const(frame_request("fns", "cam", 0, -2)), "fns", {"INVALID_REQUEST"}),
    ("frame-junk-ring", garbage_ring, "frame-junk", {"IMAGE_NOT_FOUND"}),
    ("frame-lying-ring", lying_ring, "frame-lying", {"IMAGE_NOT_FOUND"}),
]


@pytest.fixture(scope="module")
def env(classifier: Running, tmp_path_factory: pytest.TempPathFactory) -> Env:
    outside = tmp_path_factory.mktemp("outside")
    (outside / "ok.jpg").write_bytes(JPEG)
    (classifier.images / "good.jpg").write_bytes(JPEG)
    return Env(classifier.images, classifier.frames, outside)


REPLIES: Counter[str] = Counter()


def ask(running: Running, payload: Payload, timeout: float = 30) -> dict[str, Any]:
    """Publish one request and return the next reply (requests go one at a time)."""
    assert running._pending == [], f"unexpected replies: {running._pending}"
    if isinstance(payload, bytes):
        binary = base64.b64encode(payload).decode()
        running.requester("publish", topic="local/inference", binary=binary)
    else:
        running.requester("publish", topic="local/inference", json=payload)
    events = running.requester("events", sub=running.results, n=1, timeout=timeout)["events"]
    assert events, "no reply"
    replies = [_result(e) for e in events]
    running._pending += replies[1:]
    REPLIES[replies[0]["id"]] += 1
    return replies[0]


def check(result: dict[str, Any], want_id: str, codes: set[str]) -> None:
    summary = {k: v for k, v in result.items() if k in ("id", "status", "error")}
    if want_id == GENERATED:
        assert len(result["id"]) == 32 and int(result["id"], 16) >= 0, summary
    else:
        assert result["id"] == want_id, summary
    if result["status"] == "ok":
        assert OK in codes, summary
        assert result["predictions"], summary
    else:
        assert result["status"] == "error", summary
        assert result["error"]["code"] in codes, summary
        assert result["error"]["message"], summary


@pytest.mark.parametrize(
    ("make", "want_id", "codes"), [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS]
)
def test_each_bad_request_gets_one_structured_reply(
    classifier: Running, env: Env, make: Callable[[Env], Payload], want_id: str, codes: set[str]
) -> None:
    check(ask(classifier, make(env)), want_id, codes)
    assert classifier.proc.poll() is None, "the classifier died"


def test_the_corpus_is_big_enough() -> None:
    assert len(CORPUS) >= 30
    assert len({c[0] for c in CORPUS}) == len(CORPUS)


def test_a_stale_frame_is_an_error(classifier: Running, env: Env) -> None:
    pixels = np.zeros((48, 64, 3), np.uint8)
    writer = FrameWriter("stale", slots=2, slot_bytes=pixels.nbytes, directory=env.frames)
    try:
        first = writer.write(pixels)
        writer.write(pixels)
        writer.write(pixels)  # the first frame's slot now holds the third
        result = ask(classifier, {"id": "stale", "image": {"frame": first.model_dump()}})
        check(result, "stale", {"IMAGE_NOT_FOUND"})
        assert "stale" in result["error"]["message"]
    finally:
        writer.unlink()


def test_a_ring_shrunk_under_the_reader_is_an_error_not_a_crash(
    classifier: Running, env: Env
) -> None:
    """The camera restarts with a smaller frame size: same ring file, truncated and regrown."""
    big = np.zeros((480, 640, 3), np.uint8)
    writer = FrameWriter("shrink", slots=4, slot_bytes=big.nbytes, directory=env.frames)
    refs = [writer.write(big) for _ in range(4)]
    assert (
        ask(classifier, {"id": "before", "image": {"frame": refs[0].model_dump()}})["status"]
        == "ok"
    )
    writer.close()
    small = np.zeros((60, 80, 3), np.uint8)
    writer = FrameWriter("shrink", slots=1, slot_bytes=small.nbytes, directory=env.frames)
    try:
        stale = ask(classifier, {"id": "after", "image": {"frame": refs[3].model_dump()}})
        check(stale, "after", {"IMAGE_NOT_FOUND"})
        assert classifier.proc.poll() is None
        ref = writer.write(small)
        check(ask(classifier, {"id": "new", "image": {"frame": ref.model_dump()}}), "new", {OK})
    finally:
        writer.unlink()


def test_still_serving_and_no_second_replies(classifier: Running, env: Env) -> None:
    """Runs last: a good request succeeds, and no request got two replies."""
    result = ask(classifier, {"id": "final", "image": {"path": str(env.images / "good.jpg")}})
    check(result, "final", {OK})
    assert classifier._pending == [], "replies nobody asked for (a second reply?)"
    assert [rid for rid, n in REPLIES.items() if n > 1] == []
    assert classifier.proc.poll() is None
