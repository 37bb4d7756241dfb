"""An image -> the model's input tensor, exactly as its manifest describes it.

The steps follow TF's EfficientNet eval pipeline (and ``modelbuild/effnet_lite.py``, which built
the float reference): RGB; a centre square crop of ``int(crop_fraction * min(h, w))`` pixels at
``((h - c + 1) // 2, (w - c + 1) // 2)``; a PIL resize to ``resize``² with the manifest's
interpolation; ``(p - mean) / std`` in float32; NHWC or NCHW with a batch dimension of 1; for an
int8/uint8 input, the quantized values ``clip(round(x / scale + zero_point))``.

Float inputs are normalised in float32 (bit-identical to the reference pipeline). Quantized
inputs go through a per-channel lookup table of 256 entries computed once per manifest, so they
are exact (the LiteRT int8 input is ``pixel - 128`` bit for bit) and cost one gather per frame;
the ``pixel - 128`` case itself is a single XOR, the ``pixel`` case (a uint8 input taking raw
pixels) a single copy.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from ggvision.contract import PlaneSpec
from ggvision.serving.models.store import Manifest, ModelError, Preprocess, Quantization


@dataclass(frozen=True, slots=True)
class PlaneTensor:
    """A frame plane already made into the model's input (:meth:`ImageLoader.load` with a
    :class:`PlaneEncoder`): the tensor and the full frame's size (w, h) it was made from."""

    tensor: np.ndarray
    source_size: tuple[int, int]


@dataclass(frozen=True, slots=True)
class PlaneEncoder:
    """What a model wants of a frame plane: its ``spec``, and ``encode`` (the plane's pixels, a
    read-only view of the ring slot -> a new input tensor; it must not keep the view)."""

    spec: PlaneSpec
    encode: Callable[[np.ndarray], np.ndarray]


ImageLike = Image.Image | np.ndarray | PlaneTensor

_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}
# PIL modes whose samples are wider than 8 bits: scaled to 8 bits, never clipped.
_WIDE_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}


def preprocess(image: ImageLike, manifest: Manifest) -> np.ndarray:
    """``image`` (a PIL image of any mode, or an HxW / HxWx{1,3,4} uint8 or uint16 array, RGB
    channel order) -> the model input: shape ``manifest.input.shape``, dtype
    ``manifest.input.dtype``. Raises ValueError for an unusable image and ModelError when the
    manifest's preprocessing does not produce its own input shape."""
    spec = manifest.preprocess
    pixels = crop_resize(image, spec)  # (size, size, 3) uint8 RGB
    if spec.color == "BGR":
        pixels = pixels[:, :, ::-1]
    return _encode_checked(pixels, manifest)


def crop_resize(image: ImageLike, spec: Preprocess) -> np.ndarray:
    """Centre crop and resize -> (resize, resize, 3) uint8 RGB pixels."""
    if isinstance(image, PlaneTensor):
        raise ValueError("a frame plane is already the model's input")
    if isinstance(image, np.ndarray):
        return _crop_resize_array(image, spec)
    if not isinstance(image, Image.Image):
        raise ValueError(f"expected a PIL image or a numpy array, not {type(image).__name__}")
    if spec.resize_only:
        return _resize(_to_rgb(image), spec)
    w, h = image.size
    left, top, crop = _crop_box(w, h, spec.crop_fraction)
    # Crop before converting: a 12 MP frame is converted only where it is used.
    region = image.crop((left, top, left + crop, top + crop))
    return _resize(_to_rgb(region), spec)


def rgb_image(image: ImageLike) -> Image.Image:
    """Any image :func:`preprocess` takes -> an 8-bit RGB PIL image, uncropped (alpha dropped,
    16-bit samples scaled). ValueError for an unusable image."""
    if isinstance(image, PlaneTensor):
        raise ValueError("a frame plane is already the model's input")
    if isinstance(image, np.ndarray):
        pixels = _checked_array(image)
        if pixels.ndim == 3:
            pixels = pixels[:, :, :3]
        img = Image.fromarray(np.ascontiguousarray(pixels))
        return img.convert("RGB") if img.mode != "RGB" else img
    if not isinstance(image, Image.Image):
        raise ValueError(f"expected a PIL image or a numpy array, not {type(image).__name__}")
    return _to_rgb(image)


def resized(img: Image.Image, size: tuple[int, int], spec: Preprocess) -> Image.Image:
    """``img`` resized to ``size`` (w, h) with the manifest's interpolation."""
    return img if img.size == size else img.resize(size, _RESAMPLE[spec.interpolation])


# --- frame planes: the frame fitted to a model where it is made (CameraSource) ------------------
Fit = Literal["crop", "stretch", "letterbox"]


def plane_spec(spec: Preprocess, *, fit: Fit | None = None, fill: int = 0) -> PlaneSpec:
    """The frame plane a model with this preprocessing takes: its centre crop (``resize_only``:
    the whole frame stretched), or the ``fit`` given (a detector's ``stretch``/``letterbox``
    on ``fill``)."""
    if fit is None:
        fit = "stretch" if spec.resize_only else "crop"
    return PlaneSpec(
        width=spec.resize,
        height=spec.resize,
        fit=fit,
        crop_fraction=spec.crop_fraction if fit == "crop" else 1.0,
        interpolation=spec.interpolation,
        color=spec.color,
        fill=fill if fit == "letterbox" else 0,
    )


def make_plane(frame: np.ndarray, spec: PlaneSpec) -> np.ndarray:
    """An RGB frame (HxWx3 uint8, or any array :func:`preprocess` takes) -> the plane ``spec``
    describes, HxWx3 uint8 in its colour order: the very pixels the consumer's own
    preprocessing makes of the full frame (the same code: crop, resize, letterbox)."""
    if spec.width != spec.height:
        raise ValueError(f"a frame plane is square, not {spec.width}x{spec.height}")
    side = spec.width
    pre = Preprocess(
        color=spec.color,
        crop_fraction=spec.crop_fraction,
        resize=side,
        interpolation=spec.interpolation,
        resize_only=spec.fit != "crop",
    )
    if spec.fit == "letterbox":
        pixels = letterboxed(rgb_image(frame), side, pre, spec.fill)
    else:
        pixels = _crop_resize_array(frame, pre)
    return pixels[:, :, ::-1] if spec.color == "BGR" else pixels


def letterbox_box(width: int, height: int, side: int) -> tuple[int, int, int, int]:
    """Where an image of ``width`` x ``height`` lies letterboxed in a square of ``side``:
    (inner width, inner height, left padding, top padding), pixels."""
    scale = min(side / width, side / height)
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    return w, h, (side - w) // 2, (side - h) // 2


def letterboxed(img: Image.Image, side: int, spec: Preprocess, fill: int) -> np.ndarray:
    """An RGB image resized with its aspect kept and centred on a ``side`` square of ``fill``."""
    w, h, pad_x, pad_y = letterbox_box(img.width, img.height, side)
    canvas = Image.new("RGB", (side, side), (fill,) * 3)
    canvas.paste(resized(img, (w, h), spec), (pad_x, pad_y))
    return np.asarray(canvas, dtype=np.uint8)


def encode(pixels: np.ndarray, manifest: Manifest, *, raw_uint8: bool = False) -> np.ndarray:
    """(resize, resize, 3) uint8 RGB pixels -> the model input (colour order, normalisation,
    quantization, layout and shape as the manifest says). ``raw_uint8``: a uint8 input without
    quantization takes ``round((p - mean) / std)`` clipped to 0..255 (a graph that takes raw
    pixels, mean 0 and std 1); otherwise such a manifest is a ModelError."""
    if manifest.preprocess.color == "BGR":
        pixels = pixels[:, :, ::-1]
    return encode_plane(pixels, manifest, raw_uint8=raw_uint8)


def encode_plane(pixels: np.ndarray, manifest: Manifest, *, raw_uint8: bool = False) -> np.ndarray:
    """Pixels already fitted to the model and in its colour order (a frame plane,
    :func:`make_plane`) -> the model input, as :func:`encode` makes it; always a new array (an
    int8 input of ``pixel - 128``: one XOR pass)."""
    inp = manifest.input
    if raw_uint8 and inp.dtype == "uint8" and inp.quantization is None:
        manifest = manifest.model_copy(
            update={
                "input": inp.model_copy(
                    update={"quantization": Quantization(scale=1.0, zero_point=0)}
                )
            }
        )
    return _encode_checked(pixels, manifest)


def _encode_checked(pixels: np.ndarray, manifest: Manifest) -> np.ndarray:
    """``pixels`` as the model's input tensor; ModelError when that is not the manifest's own
    input shape."""
    tensor = _encode(pixels, manifest)
    want = tuple(manifest.input.shape)
    if want and tensor.shape != want:
        raise ModelError(
            f"preprocessing gives {tensor.shape} but the manifest's input is {want} "
            f"(check input.shape, input.layout and preprocess.resize)"
        )
    return tensor


def _checked_array(pixels: np.ndarray) -> np.ndarray:
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] not in (3, 4)):
        raise ValueError(f"expected an HxW, HxWx1, HxWx3 or HxWx4 array, not {pixels.shape}")
    if pixels.dtype == np.uint16:
        pixels = _16_to_8(pixels)
    elif pixels.dtype != np.uint8:
        raise ValueError(f"expected uint8 or uint16 pixels, not {pixels.dtype}")
    return pixels


def _crop_resize_array(pixels: np.ndarray, spec: Preprocess) -> np.ndarray:
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] not in (3, 4)):
        raise ValueError(f"expected an HxW, HxWx1, HxWx3 or HxWx4 array, not {pixels.shape}")
    if pixels.dtype == np.uint16:
        pixels = _16_to_8(pixels)
    elif pixels.dtype != np.uint8:
        raise ValueError(f"expected uint8 or uint16 pixels, not {pixels.dtype}")
    h, w = pixels.shape[:2]
    left, top, crop = (0, 0, 0) if spec.resize_only else _crop_box(w, h, spec.crop_fraction)
    region = pixels if spec.resize_only else pixels[top : top + crop, left : left + crop]
    if region.ndim == 3:
        region = region[:, :, :3]  # alpha dropped
    img = Image.fromarray(np.ascontiguousarray(region))
    return _resize(img.convert("RGB") if img.mode != "RGB" else img, spec)


def _crop_box(w: int, h: int, fraction: float) -> tuple[int, int, int]:
    """TF's ``_decode_and_center_crop``: (left, top, size)."""
    crop = int(fraction * min(h, w))
    if crop < 1:
        raise ValueError(f"image of {w}x{h} pixels is too small to crop")
    return (w - crop + 1) // 2, (h - crop + 1) // 2, crop


def _resize(img: Image.Image, spec: Preprocess) -> np.ndarray:
    size = (spec.resize, spec.resize)
    if img.size != size:
        img = img.resize(size, _RESAMPLE[spec.interpolation])
    return np.asarray(img, dtype=np.uint8)


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB. Alpha is dropped (not composited); 16-bit samples are scaled."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in _WIDE_MODES:
        return Image.fromarray(_wide_to_8(np.asarray(img), mode)).convert("RGB")
    if mode in ("P", "PA"):
        # A palette with transparency converts through RGBA (PIL warns otherwise).
        return img.convert("RGBA").convert("RGB")
    return img.convert("RGB")  # L, LA, RGBA, RGBa, CMYK, YCbCr, LAB, HSV, 1, ...


def _wide_to_8(samples: np.ndarray, mode: str) -> np.ndarray:
    if mode.startswith("I;16"):
        return _16_to_8(samples.astype(np.uint16, copy=False))
    if mode == "F":
        # Float images declare no range: 0..255 as PIL's own F -> L conversion assumes.
        return np.asarray(np.clip(np.rint(samples), 0, 255), dtype=np.uint8)
    # "I" (32-bit int) holds 16-bit greyscale from some decoders (TIFF, older PNG) as well as
    # widened 8-bit data: scaled from 16 bits when any sample needs more than 8.
    if samples.size and int(samples.max()) > 255:
        return _16_to_8(np.clip(samples, 0, 65535).astype(np.uint16))
    return np.asarray(np.clip(samples, 0, 255), dtype=np.uint8)


def _16_to_8(samples: np.ndarray) -> np.ndarray:
    """0..65535 -> 0..255, rounded: ``round(v * 255 / 65535)`` == ``(v + 128) // 257``-ish."""
    wide = samples.astype(np.uint32)
    return ((wide * 255 + 32767) // 65535).astype(np.uint8)


# --- normalisation / quantization --------------------------------------------------------------
def _encode(pixels: np.ndarray, manifest: Manifest) -> np.ndarray:
    spec, inp = manifest.preprocess, manifest.input
    mean, std = _three(spec.mean, "mean"), _three(spec.std, "std")
    nchw = inp.layout == "NCHW"
    if nchw:
        # 1 byte per element: transpose (and make contiguous) before widening.
        pixels = np.ascontiguousarray(pixels.transpose(2, 0, 1))
    if inp.dtype == "float32":
        x = pixels.astype(np.float32)
        m, s = np.asarray(mean, dtype=np.float32), np.asarray(std, dtype=np.float32)
        if (m == m[0]).all() and (s == s[0]).all():
            x -= m[0]
            x /= s[0]
        elif nchw:
            x -= m.reshape(3, 1, 1)
            x /= s.reshape(3, 1, 1)
        else:  # rows of w*3 values: a long inner loop instead of one of 3
            rows = x.reshape(x.shape[0], -1)
            rows -= np.tile(m, x.shape[1])
            rows /= np.tile(s, x.shape[1])
        return x[None]
    q = inp.quantization
    lut = _lut(
        mean, std, inp.dtype, None if q is None else q.scale, None if q is None else q.zero_point
    )
    if lut.minus_128:
        out = np.bitwise_xor(pixels, np.uint8(0x80)).view(np.int8)
    elif lut.identity:
        out = np.array(pixels, dtype=np.uint8)  # the input is the pixels: one copy
    elif lut.shared is not None:
        out = lut.shared[pixels]  # one gather, in the output's layout and dtype
    else:
        out = np.empty(pixels.shape, dtype=lut.table.dtype)
        for c in range(3):
            if nchw:
                out[c] = lut.table[c][pixels[c]]
            else:
                out[:, :, c] = lut.table[c][pixels[:, :, c]]
    return np.ascontiguousarray(out)[None]


class _Lut:
    __slots__ = ("identity", "minus_128", "shared", "table")

    def __init__(self, table: np.ndarray) -> None:
        self.table = table  # (3, 256)
        same = bool((table == table[0]).all())
        self.shared: np.ndarray | None = table[0] if same else None
        self.minus_128 = (
            same and table.dtype == np.int8 and bool((table[0] == (np.arange(256) - 128)).all())
        )
        self.identity = (
            same and table.dtype == np.uint8 and bool((table[0] == np.arange(256)).all())
        )


@functools.lru_cache(maxsize=16)
def _lut(
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    dtype: str,
    scale: float | None,
    zero_point: int | None,
) -> _Lut:
    p = np.arange(256, dtype=np.float32)
    m = np.asarray(mean, dtype=np.float32)[:, None]
    s = np.asarray(std, dtype=np.float32)[:, None]
    x = (p[None, :] - m) / s  # float32 arithmetic, as in the float path
    if scale is None or zero_point is None or scale <= 0:
        raise ModelError(f"a {dtype} input needs quantization {{scale > 0, zero_point}}")
    info = np.iinfo(np.dtype(dtype))
    v = x.astype(np.float64) / scale + zero_point
    r = np.copysign(np.floor(np.abs(v) + 0.5), v)  # round half away from zero, like TFLite
    return _Lut(np.clip(r, info.min, info.max).astype(dtype))


def _three(values: list[float], what: str) -> tuple[float, float, float]:
    if len(values) == 1:
        return (values[0],) * 3
    if len(values) != 3:
        raise ModelError(f"preprocess.{what} needs 1 or 3 values, not {len(values)}")
    if what == "std" and min(values) <= 0:
        raise ModelError("preprocess.std must be positive")
    return values[0], values[1], values[2]


# --- decoding ------------------------------------------------------------------------------------
def draft_size(spec: Preprocess) -> int:
    """The smallest side ``s`` for which a centre crop of an s-pixel side is still >= resize."""
    s = math.ceil(spec.resize / spec.crop_fraction)
    while int(spec.crop_fraction * s) < spec.resize:
        s += 1
    return s


def decode(data: bytes, *, fast: bool = False, spec: Preprocess | None = None) -> Image.Image:
    """Encoded image bytes -> a loaded PIL image (any mode; ``preprocess`` converts it).

    ``fast=True`` lets a JPEG decode at 1/2, 1/4 or 1/8 scale in the DCT domain
    (``Image.draft``), never below :func:`draft_size`, so the crop still covers the model's
    input; about twice as fast for large photos, with slightly different pixels. The default is
    the accurate full decode. Raises ValueError for bytes that are not a decodable image."""
    try:
        img = Image.open(io.BytesIO(data))
        if fast and img.format == "JPEG":
            s = draft_size(spec or Preprocess.model_validate({}))
            img.draft("RGB", (s, s))
        img.load()
    except UnidentifiedImageError as exc:
        raise ValueError("image cannot be decoded: not a known image format") from exc
    except (OSError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise ValueError(f"image cannot be decoded: {exc}") from exc
    return img
