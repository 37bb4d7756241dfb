"""preprocess / decode / topk on synthetic images: geometry, exact normalisation and quantization,
image modes, layouts. No model store needed."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from PIL import Image

from ggvision.serving.models.store import Manifest, ModelError, Preprocess
from ggvision.serving.preprocess import decode, draft_size, preprocess
from ggvision.serving.tasks.classification import softmax, topk

LITERT_INT8 = {"scale": 1 / 128, "zero_point": -1}


def manifest(
    *,
    size: int = 8,
    layout: str = "NHWC",
    dtype: str = "float32",
    quantization: dict[str, Any] | None = None,
    **pre: Any,
) -> Manifest:
    shape = [1, size, size, 3] if layout == "NHWC" else [1, 3, size, size]
    return Manifest.model_validate(
        {
            "name": "t",
            "version": "0",
            "variant": "t",
            "format": "tflite",
            "precision": dtype,
            "file": "m",
            "input": {
                "shape": shape,
                "layout": layout,
                "dtype": dtype,
                "quantization": quantization,
            },
            "preprocess": {"resize": size, **pre},
        }
    )


def coordinate_image(w: int, h: int) -> np.ndarray:
    """R = x, G = y, B = 7: every pixel says where it came from."""
    y, x = np.mgrid[0:h, 0:w]
    img: np.ndarray = np.stack([x, y, np.full_like(x, 7)], axis=-1).astype(np.uint8)
    return img


def pixels_of(tensor: np.ndarray) -> np.ndarray:
    """Undo (p - 127) / 128 of an NHWC float tensor."""
    pixels: np.ndarray = np.rint(tensor[0] * 128 + 127).astype(np.uint8)
    return pixels


# --- geometry -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("w", "h", "fraction", "left", "top", "crop"),
    [
        (10, 8, 0.5, 3, 2, 4),  # landscape: offset (w - crop + 1) // 2 rounds up
        (8, 10, 0.5, 2, 3, 4),  # portrait
        (9, 9, 1.0, 0, 0, 9),
        (100, 60, 0.875, 24, 4, 52),  # int(0.875 * 60) = 52
        (11, 7, 0.875, 3, 1, 6),  # int(6.125) = 6, offsets (11 - 6 + 1) // 2, (7 - 6 + 1) // 2
    ],
)
def test_centre_crop_geometry(
    w: int, h: int, fraction: float, left: int, top: int, crop: int
) -> None:
    img = coordinate_image(w, h)
    # resize == crop, so the output is the crop itself, pixel for pixel.
    m = manifest(size=crop, crop_fraction=fraction, interpolation="nearest")
    for source in (img, Image.fromarray(img)):
        got = pixels_of(preprocess(source, m))
        assert np.array_equal(got, img[top : top + crop, left : left + crop])


def test_resize_is_pil_bicubic_of_the_crop() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    m = manifest(size=32)  # crop int(0.875 * 90) = 78 at (21, 6)
    want = Image.fromarray(img).crop((21, 6, 99, 84)).resize((32, 32), Image.Resampling.BICUBIC)
    expected = (np.asarray(want, np.float32) - 127) / 128
    got = preprocess(img, m)
    assert got.dtype == np.float32
    assert np.array_equal(got[0], expected)  # bit for bit, like the reference pipeline


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear", "nearest"])
def test_interpolation_follows_the_manifest(interpolation: str) -> None:
    img = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    m = manifest(size=16, crop_fraction=1.0, interpolation=interpolation)
    resample = getattr(Image.Resampling, interpolation.upper())
    want = np.asarray(Image.fromarray(img).resize((16, 16), resample))
    assert np.array_equal(pixels_of(preprocess(img, m)), want)


# --- normalisation, quantization, layout ----------------------------------------------------------
def all_values_image() -> np.ndarray:
    """16x16x3 holding every byte value in every channel."""
    v = np.arange(256, dtype=np.uint8).reshape(16, 16)
    return np.stack([v, v[::-1], v.T], axis=-1)


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_litert_int8_input_is_pixel_minus_128_exactly(layout: str) -> None:
    img = all_values_image()
    m = manifest(size=16, crop_fraction=1.0, layout=layout, dtype="int8", quantization=LITERT_INT8)
    got = preprocess(img, m)
    want = img.astype(np.int16) - 128
    if layout == "NCHW":
        want = want.transpose(2, 0, 1)
    assert got.dtype == np.int8
    assert got.flags.c_contiguous
    assert np.array_equal(got[0], want)


def test_int8_matches_the_quantization_formula() -> None:
    img = all_values_image()
    mean, std = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
    q = {"scale": 0.0186, "zero_point": 14}
    m = manifest(size=16, crop_fraction=1.0, dtype="int8", quantization=q, mean=mean, std=std)
    got = preprocess(img, m)[0].astype(np.int32)
    x = (img.astype(np.float64) - mean) / std
    want = np.clip(np.round(x / q["scale"] + q["zero_point"]), -128, 127)
    assert np.abs(got - want).max() <= 1  # only an exact .5 may round the other way
    assert (got == want).mean() > 0.99


def test_uint8_input_with_identity_quantization_is_the_pixels() -> None:
    img = all_values_image()
    q = {"scale": 1.0, "zero_point": 0}
    m = manifest(size=16, crop_fraction=1.0, dtype="uint8", quantization=q, mean=[0], std=[1])
    got = preprocess(img, m)
    assert got.dtype == np.uint8
    assert np.array_equal(got[0], img)


def test_float_normalisation_per_channel() -> None:
    img = all_values_image()
    mean, std = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
    got = preprocess(img, manifest(size=16, crop_fraction=1.0, mean=mean, std=std))
    want = (img.astype(np.float32) - np.array(mean, np.float32)) / np.array(std, np.float32)
    assert np.allclose(got[0], want, rtol=0, atol=1e-6)


def test_nchw_is_the_transpose_of_nhwc() -> None:
    img = np.random.default_rng(2).integers(0, 256, (50, 40, 3), dtype=np.uint8)
    nhwc = preprocess(img, manifest(size=24))
    nchw = preprocess(img, manifest(size=24, layout="NCHW"))
    assert nhwc.shape == (1, 24, 24, 3)
    assert nchw.shape == (1, 3, 24, 24)
    assert nchw.flags.c_contiguous
    assert np.array_equal(nchw[0], nhwc[0].transpose(2, 0, 1))


def test_bgr_swaps_channels() -> None:
    img = coordinate_image(8, 8)
    rgb = preprocess(img, manifest(crop_fraction=1.0))
    bgr = preprocess(img, manifest(crop_fraction=1.0, color="BGR"))
    assert np.array_equal(bgr[0], rgb[0][:, :, ::-1])


def test_manifest_shape_that_preprocessing_cannot_produce() -> None:
    m = manifest(size=8)
    m.input.shape = [1, 9, 9, 3]
    with pytest.raises(ModelError):
        preprocess(coordinate_image(16, 16), m)


# --- image modes ----------------------------------------------------------------------------------
def grey16() -> np.ndarray:
    return np.array([[0, 257, 32896, 65535], [1000, 20000, 40000, 60000]] * 2, dtype=np.uint16)


def scaled16(v: np.ndarray) -> np.ndarray:
    return np.rint(v.astype(np.float64) * 255 / 65535).astype(np.uint8)


@pytest.mark.parametrize("source", ["array", "pil", "png"])
def test_16_bit_grey_is_scaled_not_clipped(source: str) -> None:
    v = grey16()
    if source == "array":
        image: Any = v
    else:
        image = Image.fromarray(v)
        assert image.mode == "I;16"
        if source == "png":
            buf = io.BytesIO()
            image.save(buf, format="PNG")
            image = decode(buf.getvalue())
    got = pixels_of(preprocess(image, manifest(size=4, crop_fraction=1.0, interpolation="nearest")))
    want = scaled16(v[:4, :4])
    assert np.array_equal(got, np.stack([want] * 3, axis=-1))
    assert got.max() == 255  # 65535 -> 255, and 20000 is not clipped to 255
    assert got[1, 1, 0] == 78


def test_32_bit_int_image_holding_16_bit_values() -> None:
    v = grey16().astype(np.int32)
    got = pixels_of(preprocess(Image.fromarray(v, mode="I"), manifest(size=4, crop_fraction=1.0)))
    assert np.array_equal(got[:, :, 0], scaled16(v[:4, :4].astype(np.uint16)))


def test_rgba_drops_alpha() -> None:
    img = coordinate_image(8, 8)
    rgba = np.concatenate([img, np.zeros((8, 8, 1), np.uint8)], axis=-1)  # fully transparent
    m = manifest(crop_fraction=1.0)
    want = preprocess(img, m)
    assert np.array_equal(preprocess(rgba, m), want)
    assert np.array_equal(preprocess(Image.fromarray(rgba, "RGBA"), m), want)


@pytest.mark.parametrize("shape", [(8, 8), (8, 8, 1)])
def test_grey_array_becomes_rgb(shape: tuple[int, ...]) -> None:
    grey = np.arange(64, dtype=np.uint8).reshape(shape)
    m = manifest(crop_fraction=1.0)
    got = preprocess(grey, m)
    assert np.array_equal(got, preprocess(np.repeat(grey.reshape(8, 8, 1), 3, axis=-1), m))


@pytest.mark.parametrize("mode", ["L", "LA", "P", "CMYK", "YCbCr", "1"])
def test_pil_modes_convert_like_pil(mode: str) -> None:
    img = Image.fromarray(np.random.default_rng(3).integers(0, 256, (20, 20, 3), dtype=np.uint8))
    converted = img.convert(mode)
    m = manifest(size=12)
    assert np.array_equal(preprocess(converted, m), preprocess(converted.convert("RGB"), m))


def test_palette_with_transparency() -> None:
    img = Image.new("P", (10, 10), 1)
    img.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    img.info["transparency"] = 1
    got = pixels_of(preprocess(img, manifest(size=4)))
    assert (got == [200, 100, 50]).all()  # the colour, not a black "transparent" pixel


@pytest.mark.parametrize(
    ("image", "error"),
    [
        (np.zeros((8, 8, 3), np.float32), "uint8 or uint16"),
        (np.zeros((8, 8, 2), np.uint8), "HxW"),
        (np.zeros((1, 1, 3), np.uint8), "too small"),
        ("picture.jpg", "PIL image or a numpy array"),
    ],
)
def test_unusable_images(image: Any, error: str) -> None:
    with pytest.raises(ValueError) as info:
        preprocess(image, manifest(crop_fraction=0.5))
    assert error in str(info.value)


# --- decode ---------------------------------------------------------------------------------------
def jpeg(w: int, h: int) -> bytes:
    rng = np.random.default_rng(4)
    small = rng.integers(0, 256, (h // 16, w // 16, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(small).resize((w, h)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def test_decode_is_accurate_by_default() -> None:
    data = jpeg(1600, 1200)
    img = decode(data)
    assert img.size == (1600, 1200)
    assert np.array_equal(np.asarray(img), np.asarray(Image.open(io.BytesIO(data))))


@pytest.mark.parametrize(("w", "h"), [(1600, 1200), (4032, 3024), (640, 480), (300, 257)])
def test_fast_decode_keeps_the_crop_at_least_the_input_size(w: int, h: int) -> None:
    spec = Preprocess.model_validate({})
    img = decode(jpeg(w, h), fast=True, spec=spec)
    assert min(img.size) >= draft_size(spec)
    assert int(spec.crop_fraction * min(img.size)) >= spec.resize
    if min(w, h) >= 2 * draft_size(spec):
        assert img.size[0] < w  # it did decode at a reduced scale


def test_fast_decode_leaves_png_alone() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (1000, 800)).save(buf, format="PNG")
    assert decode(buf.getvalue(), fast=True).size == (1000, 800)


@pytest.mark.parametrize("data", [b"", b"not an image", jpeg(64, 64)[:200]])
def test_decode_rejects_bad_bytes(data: bytes) -> None:
    with pytest.raises(ValueError) as info:
        decode(data)
    assert "cannot be decoded" in str(info.value)


@pytest.mark.parametrize(
    ("resize", "fraction", "want"), [(224, 0.875, 256), (240, 0.875, 275), (224, 1.0, 224)]
)
def test_draft_size(resize: int, fraction: float, want: int) -> None:
    spec = Preprocess.model_validate({"resize": resize, "crop_fraction": fraction})
    s = draft_size(spec)
    assert s == want
    assert int(fraction * s) >= resize > int(fraction * (s - 1))


# --- topk -----------------------------------------------------------------------------------------
def test_topk_of_logits_is_softmax_ranked() -> None:
    logits = np.array([1.0, 3.0, 2.0, 3.0, -1.0], np.float32)
    got = topk(logits, 3, 0.0, "logits")
    probs = softmax(logits)
    assert [i for i, _ in got] == [1, 3, 2]  # ties: lower index first
    assert [p for _, p in got] == pytest.approx([probs[1], probs[3], probs[2]])
    assert probs.sum() == pytest.approx(1.0)


def test_topk_threshold_and_probabilities() -> None:
    probs = np.array([0.05, 0.6, 0.3, 0.05], np.float32)
    got = topk(probs, 4, 0.25, "probabilities")
    assert [i for i, _ in got] == [1, 2]
    assert [p for _, p in got] == pytest.approx([0.6, 0.3])


@pytest.mark.parametrize(("k", "n"), [(0, 0), (10, 4), (1, 1)])
def test_topk_sizes(k: int, n: int) -> None:
    assert len(topk(np.arange(4, dtype=np.float32), k, 0.0, "logits")) == n


def test_topk_large_logits_are_stable() -> None:
    got = topk(np.array([1000.0, 999.0, -1000.0]), 2, 0.0, "logits")
    assert got[0][1] == pytest.approx(1 / (1 + np.exp(-1.0)))


def test_topk_rejects_nan() -> None:
    with pytest.raises(ValueError):
        topk(np.array([np.nan, 1.0]), 1, 0.0, "logits")
