"""The backends on the real runtimes and the real model files: every variant agrees with the
float reference, failures are ModelErrors with a reason, and the registry names a missing
runtime. The fake backend (for pipeline tests) is tested here too, without any runtime."""

from __future__ import annotations

import ctypes.util
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ggvision_classifier import classify_cli

from ggvision.serving.models import backends
from ggvision.serving.models.backends import BackendUnavailable
from ggvision.serving.models.backends.base import Backend
from ggvision.serving.models.store import DEFAULT_BACKEND, Manifest, Model, ModelError

from .conftest import INT8, PHOTOS, Loaded, load_variant, variant_model


def _edited(model: Model, **changes: Any) -> Model:
    """``model`` with manifest fields replaced (``input={...}`` merges into the input spec)."""
    raw = model.manifest.model_dump(by_alias=True)
    for key, value in changes.items():
        if isinstance(value, dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return Model(model.directory, Manifest.model_validate(raw), model.labels)


def _create(model: Model, **options: Any) -> Backend:
    return backends.create(DEFAULT_BACKEND[model.manifest.format], model, options=options or None)


def _zeros(model: Model) -> np.ndarray:
    spec = model.manifest.input
    return np.zeros(spec.shape, dtype=np.dtype(spec.dtype))


# --- agreement with the float reference --------------------------------------------------------
@pytest.mark.parametrize("photo", list(PHOTOS))
def test_top1_matches_float_reference(
    loaded: Loaded,
    predictions: dict[str, list[tuple[int, float]]],
    reference: dict[str, list[tuple[int, float]]],
    photo: str,
) -> None:
    got = predictions[photo]
    ref = reference[photo]
    labels = loaded.model.labels
    assert got[0][0] == ref[0][0], (
        f"{loaded.variant} on {photo}: {labels[got[0][0]]} {got[0][1]:.3f}, "
        f"float reference {labels[ref[0][0]]} {ref[0][1]:.3f}"
    )


def test_top5_overlap_with_float_reference(
    loaded: Loaded,
    predictions: dict[str, list[tuple[int, float]]],
    reference: dict[str, list[tuple[int, float]]],
) -> None:
    overlaps = [
        len({i for i, _ in predictions[p]} & {i for i, _ in reference[p]}) / 5 for p in PHOTOS
    ]
    mean = sum(overlaps) / len(overlaps)
    if loaded.variant in INT8:
        assert mean >= 0.8, f"{loaded.variant}: mean top-5 overlap {mean:.2f} ({overlaps})"
        return
    # Float variants compute the reference's function: only JPEG's loss separates them.
    assert mean >= 0.9, f"{loaded.variant}: mean top-5 overlap {mean:.2f} ({overlaps})"
    for photo in PHOTOS:
        assert predictions[photo][0][1] == pytest.approx(reference[photo][0][1], abs=0.05), photo


def test_infer_returns_float32_scores_per_class(loaded: Loaded) -> None:
    scores = loaded.backend.infer(_zeros(loaded.model))
    assert scores.dtype == np.float32
    assert scores.shape == (loaded.model.manifest.num_classes,)
    assert np.isfinite(scores).all()


def test_infer_rejects_wrong_shape(loaded: Loaded) -> None:
    spec = loaded.model.manifest.input
    wrong = np.zeros([d + 1 if i else d for i, d in enumerate(spec.shape)], dtype=spec.dtype)
    with pytest.raises(ModelError) as info:
        loaded.backend.infer(wrong)
    assert "shape" in str(info.value)


def test_infer_rejects_wrong_dtype(loaded: Loaded) -> None:
    spec = loaded.model.manifest.input
    other = "uint8" if spec.dtype == "float32" else "float32"
    with pytest.raises(ModelError) as info:
        loaded.backend.infer(np.zeros(spec.shape, dtype=other))
    assert "dtype" in str(info.value)


# --- load failures -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("variant", "changes"),
    [
        pytest.param(
            "tflite-int8",
            {"input": {"shape": [1, 240, 240, 3]}, "preprocess": {"resize": 240}},
            id="tflite-size",
        ),
        pytest.param(
            "tflite-fp32",
            {"input": {"shape": [1, 3, 224, 224], "layout": "NCHW"}},
            id="tflite-layout",
        ),
        pytest.param(
            "tflite-int8", {"input": {"dtype": "float32", "quantization": None}}, id="tflite-dtype"
        ),
        pytest.param(
            "tflite-int8",
            {"input": {"quantization": {"scale": 1 / 255, "zero_point": -1}}},
            id="tflite-input-quantization",
        ),
        pytest.param(
            "tflite-int8",
            {"output": {"quantization": {"scale": 0.1, "zero_point": -54}}},
            id="tflite-output-quantization",
        ),
        pytest.param(
            "onnx-fp32",
            {"input": {"shape": [1, 3, 240, 240]}, "preprocess": {"resize": 240}},
            id="onnx-size",
        ),
        pytest.param(
            "onnx-int8",
            {"input": {"shape": [1, 224, 224, 3], "layout": "NHWC"}},
            id="onnx-layout",
        ),
        pytest.param(
            "onnx-int8",
            {"input": {"dtype": "int8", "quantization": {"scale": 1, "zero_point": 0}}},
            id="onnx-dtype",
        ),
        pytest.param(
            "torchscript-int8-x86",
            {"input": {"shape": [1, 224, 224, 3], "layout": "NHWC"}},
            id="torch-layout",
        ),
        pytest.param("torchscript-fp32", {"num_classes": 10}, id="torch-classes"),
    ],
)
def test_manifest_disagreeing_with_model_is_model_error(
    store: Path, variant: str, changes: dict[str, Any]
) -> None:
    model = variant_model(store, variant)
    if "num_classes" in changes:
        model = Model(model.directory, model.manifest, model.labels[: changes["num_classes"]])
    backend = _create(_edited(model, **changes))
    with pytest.raises(ModelError) as info:
        backend.load()
    assert str(model.file) in str(info.value)


def _copy_variant(store: Path, variant: str, dest: Path) -> Path:
    variant_model(store, variant)  # skips without the variant or its runtime
    shutil.copytree(store / variant, dest / variant)
    return dest / variant


@pytest.mark.parametrize("variant", ["tflite-int8", "onnx-int8", "torchscript-int8-x86"])
def test_truncated_model_file_is_model_error(store: Path, tmp_path: Path, variant: str) -> None:
    directory = _copy_variant(store, variant, tmp_path)
    model = Model.load(directory)
    data = model.file.read_bytes()
    model.file.write_bytes(data[: len(data) // 2])

    with pytest.raises(ModelError) as checked:
        Model.load(directory)  # the manifest's sha256 catches it first
    assert "sha256" in str(checked.value)

    backend = _create(Model.load(directory, verify_sha256=False))
    with pytest.raises(ModelError) as info:
        backend.load()
    assert "cannot load" in str(info.value)


def test_torch_refuses_a_pickle_that_is_not_torchscript(store: Path, tmp_path: Path) -> None:
    directory = _copy_variant(store, "torchscript-fp32", tmp_path)
    import torch

    torch.save({"weights": torch.zeros(3)}, directory / "model.pt")
    backend = _create(Model.load(directory, verify_sha256=False))
    with pytest.raises(ModelError) as info:
        backend.load()
    assert "TorchScript" in str(info.value)


def test_torch_refuses_an_engine_this_build_lacks(store: Path) -> None:
    model = variant_model(store, "torchscript-int8-qnnpack")
    backend = _create(_edited(model, torch_engine="no-such-engine"))
    with pytest.raises(ModelError) as info:
        backend.load()
    assert "no-such-engine" in str(info.value)


# --- Edge TPU delegate ----------------------------------------------------------------------------
def _not_a_delegate() -> str:
    lib = ctypes.util.find_library("m")
    if lib is None:
        pytest.skip("no libm to stand in for a library that is not a delegate")
    return lib


@pytest.mark.parametrize("which", ["missing", "not-a-delegate"])
def test_delegate_that_cannot_load_is_model_error(store: Path, tmp_path: Path, which: str) -> None:
    library = str(tmp_path / "libedgetpu.so.1") if which == "missing" else _not_a_delegate()
    backend = _create(variant_model(store, "tflite-int8"), delegate=library)
    with pytest.raises(ModelError) as info:
        backend.load()
    message = str(info.value)
    assert library in message
    assert "cpu" in message  # names the fallback


def test_delegate_fallback_runs_on_cpu_and_agrees(
    store: Path,
    tmp_path: Path,
    photo_files: dict[str, Path],
    reference: dict[str, list[tuple[int, float]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    library = str(tmp_path / "libedgetpu.so.1")
    with caplog.at_level(logging.WARNING, logger="ggvision.serving.models.backends.tflite"):
        item = load_variant(store, "tflite-int8", delegate=library, delegate_fallback="cpu")
    assert any(
        getattr(r, "event", None) == "classifier.delegate_fallback" and library in r.getMessage()
        for r in caplog.records
    )
    for photo in ("chelsea", "coffee", "camera"):
        assert item.classify(photo_files[photo], k=1)[0][0] == reference[photo][0][0], photo


# --- the registry ---------------------------------------------------------------------------------
def test_missing_runtime_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, store: Path
) -> None:
    (tmp_path / "ggv_test_needs_missing_runtime.py").write_text(
        "import ggv_no_such_runtime_package  # noqa: F401\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "ggv_test_needs_missing_runtime", raising=False)
    monkeypatch.setitem(
        backends.REGISTRY,
        "npu",
        ("ggv_test_needs_missing_runtime", "NpuBackend", "npu-runtime", "npu"),
    )
    model = variant_model(store, "tflite-int8")
    with pytest.raises(BackendUnavailable) as info:
        backends.create("npu", model)
    message = str(info.value)
    assert "npu-runtime" in message
    assert "ggv_no_such_runtime_package" in message
    assert "[npu]" in message


def test_missing_module_of_our_own_is_not_a_missing_runtime(
    monkeypatch: pytest.MonkeyPatch, store: Path
) -> None:
    monkeypatch.setitem(
        backends.REGISTRY, "typo", ("ggvision.serving.models.backends.nope", "X", "numpy", "-")
    )
    model = variant_model(store, "tflite-int8")
    with pytest.raises(ModuleNotFoundError):
        backends.create("typo", model)


def test_unknown_backend_is_model_error(store: Path) -> None:
    with pytest.raises(ModelError) as info:
        backends.create("coral", variant_model(store, "tflite-int8"))
    assert "tflite" in str(info.value)  # lists the known ones


@pytest.mark.parametrize("variant", ["tflite-int8", "onnx-int8", "torchscript-fp32"])
def test_closed_backend_refuses_inference(store: Path, variant: str) -> None:
    item = load_variant(store, variant)
    item.backend.close()
    with pytest.raises(ModelError):
        item.backend.infer(_zeros(item.model))


# --- the classify CLI -----------------------------------------------------------------------------
def test_classify_run(store: Path, photo_files: dict[str, Path]) -> None:
    variant_model(store, "tflite-int8")
    results = classify_cli.run(
        [photo_files["coffee"], photo_files["camera"]], store, "tflite-int8", None, 1, 3
    )
    assert [r["image"] for r in results] == [str(photo_files["coffee"]), str(photo_files["camera"])]
    coffee = results[0]
    assert coffee["model"]["backend"] == "tflite"
    assert coffee["model"]["variant"] == "tflite-int8"
    assert coffee["predictions"][0]["label"] == "espresso"
    assert len(coffee["predictions"]) == 3
    scores = [p["score"] for p in coffee["predictions"]]
    assert scores == sorted(scores, reverse=True)
    assert 0.5 < scores[0] <= 1.0  # a probability, not a logit
    assert set(coffee["timing_ms"]) == {"decode", "preprocess", "inference"}


def test_classify_main_json_and_bad_image(
    store: Path,
    tmp_path: Path,
    photo_files: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    variant_model(store, "onnx-int8")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    argv = [str(photo_files["chelsea"]), str(bad), "--model-store", str(store)]
    rc = classify_cli.main([*argv, "--variant", "onnx-int8", "--top-k", "2", "--json"])
    assert rc == 1  # one image failed
    out = json.loads(capsys.readouterr().out)
    assert out[0]["predictions"][0]["index"] == 282  # tiger cat
    assert "cannot be decoded" in out[1]["error"]


def test_classify_out_writes_the_annotated_image(
    store: Path, tmp_path: Path, photo_files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """``--out annotated.jpg``: the photo with its top labels and scores drawn on it, the same
    drawing as ggvision.annotate gives for that answer; several images go into a folder."""
    from PIL import Image, ImageChops

    from ggvision.annotate import annotate

    variant_model(store, "tflite-int8")
    out = tmp_path / "annotated.jpg"
    rc = classify_cli.main(
        [str(photo_files["chelsea"]), "--model-store", str(store), "--json", "--out", str(out)]
    )
    assert rc == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["annotated"] == str(out)
    with Image.open(out) as written, Image.open(photo_files["chelsea"]) as photo:
        assert written.format == "JPEG" and written.size == photo.size
        m = result["model"]
        expected = annotate(
            photo,
            predictions=result["predictions"],
            lines=[f"{m['name']} {m['backend']}", f"{result['timing_ms']['inference']:.1f} ms"],
        )
        # The panel is drawn (the corner differs from the photo) and it is that drawing (the
        # JPEG round trip aside).
        corner = (0, 0, 120, 60)
        drawn = ImageChops.difference(written.convert("RGB").crop(corner), photo.crop(corner))
        assert max(hi for _, hi in drawn.getextrema()) > 100
        same = ImageChops.difference(written.convert("RGB"), expected.convert("RGB"))
        assert sum(same.convert("L").histogram()[40:]) < 0.01 * photo.width * photo.height
    folder = tmp_path / "many"
    results = classify_cli.run(
        [photo_files["chelsea"], photo_files["coffee"]], store, "tflite-int8", out=folder
    )
    assert sorted(p.name for p in folder.iterdir()) == ["chelsea.jpg", "coffee.jpg"]
    assert [r["annotated"] for r in results] == [
        str(folder / "chelsea.jpg"),
        str(folder / "coffee.jpg"),
    ]


def test_classify_main_without_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = classify_cli.main(["x.jpg", "--model-store", str(tmp_path / "none")])
    assert rc == 2
    assert "no model at" in capsys.readouterr().err


# --- the fake backend (no runtime, no model file) -----------------------------------------------
@pytest.fixture
def fake_model(tmp_path: Path) -> Model:
    manifest = Manifest.model_validate(
        {
            "name": "fake",
            "version": "0",
            "variant": "fake",
            "format": "tflite",
            "precision": "fp32",
            "file": "absent.tflite",
            "num_classes": 10,
            "input": {"shape": [1, 4, 4, 3], "layout": "NHWC", "dtype": "float32"},
        }
    )
    return Model(tmp_path, manifest, [f"class{i}" for i in range(10)])


def _fake(model: Model, **options: Any) -> Backend:
    backend = backends.create("fake", model, options=options or None)
    backend.load()
    return backend


def test_fake_is_deterministic_and_input_dependent(fake_model: Model) -> None:
    a = np.zeros((1, 4, 4, 3), np.float32)
    b = np.ones((1, 4, 4, 3), np.float32)
    first, second = _fake(fake_model), _fake(fake_model)
    assert np.array_equal(first.infer(a), second.infer(a))
    assert not np.array_equal(first.infer(a), first.infer(b))
    assert first.infer(a).shape == (10,)


def test_fake_delay(fake_model: Model) -> None:
    backend = _fake(fake_model, delay_ms=30)
    t0 = time.perf_counter()
    backend.infer(np.zeros((1, 4, 4, 3), np.float32))
    assert time.perf_counter() - t0 >= 0.03


@pytest.mark.parametrize(("fail_on", "failing"), [(2, {2}), ([1, 3], {1, 3})])
def test_fake_fail_on_calls(fake_model: Model, fail_on: Any, failing: set[int]) -> None:
    backend = _fake(fake_model, fail_on=fail_on)
    outcomes = {}
    for call in range(1, 5):
        try:
            backend.infer(np.zeros((1, 4, 4, 3), np.float32))
            outcomes[call] = "ok"
        except RuntimeError:
            outcomes[call] = "failed"
    assert {c for c, o in outcomes.items() if o == "failed"} == failing


def test_fake_fail_on_load(fake_model: Model) -> None:
    backend = backends.create("fake", fake_model, options={"fail_on": "load"})
    with pytest.raises(ModelError):
        backend.load()


@pytest.mark.parametrize("options", [{"fail_on": "sometimes"}, {"delay_ms": -1}])
def test_fake_rejects_bad_options(fake_model: Model, options: dict[str, Any]) -> None:
    with pytest.raises(ModelError):
        backends.create("fake", fake_model, options=options)


def test_fake_checks_like_a_real_backend(fake_model: Model) -> None:
    backend = _fake(fake_model)
    with pytest.raises(ModelError):
        backend.infer(np.zeros((1, 4, 4, 4), np.float32))
