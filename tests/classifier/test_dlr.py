"""The DLR backend on the real DLR model that ``make models-dlr`` builds (efficientnet-lite0
compiled with TVM 0.25 for dlr 1.6.0), in our model-store layout and in AWS's, on the sample
photos, in process and through the classifier component on the IPC core."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ggvision_classifier.config import ClassifierConfig

from ggvision.serving.models import backends
from ggvision.serving.models.awsdlr import aws_dlr_model, parse_synset
from ggvision.serving.models.loading import configured_model
from ggvision.serving.models.store import Model, ModelError
from ggvision.serving.preprocess import decode, preprocess
from tests.classifier.conftest import (
    PHOTOS,
    REPO,
    Loaded,
    load_variant,
    require,
    require_runtime,
)
from tests.classifier.test_service import Running, serve

VARIANT = "dlr-fp32"
AWS_KEY = f"DLR-efficientnet-lite0-{platform.machine()}-cpu-ImageClassification"


def aws_store_root() -> Path:
    env = os.environ.get("GGV_AWS_DLR_MODEL_STORE")
    return Path(env) if env else REPO / "build" / "aws-dlr-model-store"


@pytest.fixture(scope="module")
def dlr_dir(store: Path) -> Path:
    require_runtime("dlr")  # extra [dlr]
    directory = store / VARIANT
    if not (directory / "manifest.json").is_file():
        require(f"variant {VARIANT} is not in {store} (build it with `make models-dlr`)")
    return directory


@pytest.fixture(scope="module")
def aws_dir(dlr_dir: Path) -> Path:
    directory = aws_store_root() / AWS_KEY
    if not (directory / "synset.txt").is_file():
        require(f"no AWS-layout DLR model at {directory} (build it with `make models-dlr`)")
    return directory


@pytest.fixture(scope="module")
def onnx_ref(store: Path) -> Iterator[Loaded]:
    pytest.importorskip("onnxruntime")
    item = load_variant(store, "onnx-fp32")
    yield item
    item.backend.close()


@pytest.fixture(scope="module")
def dlr_loaded(dlr_dir: Path) -> Iterator[Loaded]:
    model = Model.load(dlr_dir)
    backend = backends.create("dlr", model, threads=1)
    backend.load()
    yield Loaded(VARIANT, model, backend)
    backend.close()


def onnx_top1(onnx_ref: Loaded, path: Path) -> int:
    return onnx_ref.classify(path, k=1)[0][0]


# --- in process ---------------------------------------------------------------------------------
def test_manifest_describes_the_baked_in_model(dlr_loaded: Loaded) -> None:
    m = dlr_loaded.model.manifest
    assert (m.format, m.precision, m.file) == ("dlr", "fp32", "dlr/compiled.so")
    assert (m.input.shape, m.input.layout, m.input.dtype) == ([1, 224, 224, 3], "NHWC", "float32")
    assert m.output.kind == "probabilities"
    assert (m.preprocess.mean, m.preprocess.std) == ([0, 0, 0], [1, 1, 1])
    files = sorted(p.name for p in (dlr_loaded.model.directory / "dlr").iterdir())
    assert files == ["compiled.meta", "compiled.params", "compiled.so", "compiled_model.json"]


def test_top1_agrees_with_the_onnx_reference_on_every_photo(
    dlr_loaded: Loaded, onnx_ref: Loaded, photo_files: dict[str, Path]
) -> None:
    for name, path in photo_files.items():
        dlr_top = dlr_loaded.classify(path)
        assert dlr_top[0][0] == onnx_top1(onnx_ref, path), name
        assert 0.0 < dlr_top[0][1] <= 1.0
    assert set(photo_files) == set(PHOTOS)


def test_probabilities_match_onnx_softmax_closely(
    dlr_loaded: Loaded, onnx_ref: Loaded, photo_files: dict[str, Path]
) -> None:
    path = photo_files["chelsea"]
    image = decode(path.read_bytes())
    probs = dlr_loaded.backend.infer(preprocess(image, dlr_loaded.model.manifest))
    logits = onnx_ref.backend.infer(preprocess(image, onnx_ref.model.manifest))
    e = np.exp(logits - logits.max())
    np.testing.assert_allclose(probs, e / e.sum(), atol=1e-4)
    assert abs(float(probs.sum()) - 1.0) < 1e-4


def _copy(dlr_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / VARIANT
    shutil.copytree(dlr_dir, target)
    return target


def _edit_manifest(directory: Path, **changes: Any) -> None:
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    for key, value in changes.items():
        manifest[key] = {**manifest[key], **value} if isinstance(value, dict) else value
    path.write_text(json.dumps(manifest))


def test_a_layout_mismatch_is_a_clear_error_although_dlr_would_accept_it(
    dlr_dir: Path, tmp_path: Path
) -> None:
    # Same element count, other layout: DLR itself would run it and answer nonsense.
    directory = _copy(dlr_dir, tmp_path)
    _edit_manifest(directory, input={"shape": [1, 3, 224, 224], "layout": "NCHW"})
    backend = backends.create("dlr", Model.load(directory))
    with pytest.raises(ModelError, match=r"input shape is \[1, 224, 224, 3\].*NCHW.*layout"):
        backend.load()


def test_a_dtype_or_class_count_mismatch_is_a_clear_error(dlr_dir: Path, tmp_path: Path) -> None:
    directory = _copy(dlr_dir, tmp_path)
    _edit_manifest(
        directory, input={"dtype": "uint8", "quantization": {"scale": 1, "zero_point": 0}}
    )
    with pytest.raises(ModelError, match="input dtype is float32 but the manifest says uint8"):
        backends.create("dlr", Model.load(directory)).load()
    _edit_manifest(directory, input={"dtype": "float32"}, num_classes=10)
    (directory / "labels.txt").write_text("".join(f"c{i}\n" for i in range(10)))
    with pytest.raises(ModelError, match="outputs 1000 scores for 10 classes"):
        backends.create("dlr", Model.load(directory)).load()


def test_no_libdlr_for_this_machine_is_a_clear_error(
    dlr_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What aarch64/armv7l get from PyPI: dlr 1.6.0 without libdlr.so (DLR's own search fails).
    import dlr.dlr_model
    from dlr.libpath import DLRLibraryNotFound

    def not_found(*args: Any, **kwargs: Any) -> str:
        raise DLRLibraryNotFound("Cannot find DLR Library in the candidate path")

    monkeypatch.setattr(dlr.dlr_model, "find_lib_path", not_found)
    with pytest.raises(
        ModelError, match=r"libdlr\.so built for this machine in the model directory"
    ):
        backends.create("dlr", Model.load(dlr_dir)).load()


def test_a_second_model_file_is_refused_as_dlr_refuses_it(dlr_dir: Path, tmp_path: Path) -> None:
    directory = _copy(dlr_dir, tmp_path)
    shutil.copy(directory / "dlr" / "compiled.params", directory / "dlr" / "other.params")
    with pytest.raises(ModelError, match="dlr cannot load"):
        backends.create("dlr", Model.load(directory)).load()


# --- AWS's model-store layout -------------------------------------------------------------------
def test_synset_dict_literal_is_parsed_without_running_code(tmp_path: Path) -> None:
    assert parse_synset("{0: 'tench, Tinca tinca', 1: 'goldfish'}\n") == [
        "tench, Tinca tinca",
        "goldfish",
    ]
    assert parse_synset("n01440764 tench\nn01443537 goldfish\n") == [
        "n01440764 tench",
        "n01443537 goldfish",
    ]
    marker = tmp_path / "ran"
    with pytest.raises(ValueError, match="not a Python dict literal"):
        parse_synset(f"{{0: __import__('pathlib').Path({str(marker)!r}).touch()}}")
    assert not marker.exists()
    with pytest.raises(ValueError, match=r"0\.\.1"):
        parse_synset("{0: 'a', 2: 'b'}")


def test_aws_layout_model_resized_and_fed_as_is(aws_dir: Path) -> None:
    model = aws_dlr_model(aws_dir)
    m = model.manifest
    assert (m.format, m.file, m.labels, m.num_classes) == ("dlr", "compiled.so", "synset.txt", 1000)
    assert m.input_as_is and m.preprocess.resize_only and m.input.shape == [1, 224, 224, 3]
    assert model.labels[281] == "tabby" and model.labels[282] == "tiger cat"


def test_aws_layout_top1_agrees_with_onnx_on_the_same_resized_pixels(
    aws_dir: Path, onnx_ref: Loaded, photo_files: dict[str, Path]
) -> None:
    model = aws_dlr_model(aws_dir)
    backend = backends.create("dlr", model, threads=1)
    backend.load()
    ref_manifest = onnx_ref.model.manifest.model_copy(
        update={
            "preprocess": onnx_ref.model.manifest.preprocess.model_copy(
                update={"resize_only": True, "interpolation": "bilinear"}
            )
        }
    )
    try:
        for name, path in photo_files.items():
            image = decode(path.read_bytes())
            probs = backend.infer(preprocess(image, model.manifest))
            logits = onnx_ref.backend.infer(preprocess(image, ref_manifest))
            assert int(np.argmax(probs)) == int(np.argmax(logits)), name
    finally:
        backend.close()


def test_model_resource_key_picks_the_directory_of_this_architecture(
    aws_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = ClassifierConfig.from_raw(
        {
            "modelStoreLayout": "aws-dlr",
            "modelResourceKey": {"armv7l": "no-such-dir", platform.machine(): aws_dir.name},
        }
    )
    assert configured_model(cfg, aws_dir.parent).directory.name == aws_dir.name
    monkeypatch.setattr(platform, "machine", lambda: "armv7l")
    with pytest.raises(ModelError, match=r"no model at .*no-such-dir"):
        configured_model(cfg, aws_dir.parent)
    monkeypatch.setattr(platform, "machine", lambda: "riscv64")
    with pytest.raises(ModelError, match=r"architecture 'riscv64'.*armv7l"):
        configured_model(cfg, aws_dir.parent)


def test_aws_layout_element_count_mismatch_is_a_clear_error(aws_dir: Path, tmp_path: Path) -> None:
    # A .meta that declares another input than the model has: the image would not fit.
    directory = tmp_path / aws_dir.name
    shutil.copytree(aws_dir, directory)
    meta = {"Model": {"Inputs": [{"name": "data", "dtype": "float32", "shape": [1, 3, 200, 200]}]}}
    (directory / "compiled.meta").write_text(json.dumps(meta))
    model = aws_dlr_model(directory)
    assert model.manifest.input.shape == [1, 200, 200, 3]
    with pytest.raises(ModelError, match=r"does not hold one .*150528 != 120000 elements"):
        backends.create("dlr", model).load()


def _with_meta(aws_dir: Path, tmp_path: Path, shape: list[int], layout: str) -> Path:
    directory = tmp_path / aws_dir.name
    shutil.copytree(aws_dir, directory)
    entry = {"name": "data", "dtype": "float32", "shape": shape, "layout": layout}
    (directory / "compiled.meta").write_text(json.dumps({"Model": {"Inputs": [entry]}}))
    return directory


def test_aws_layout_with_a_meta_layout_gets_that_layout_checked_exactly(
    aws_dir: Path, tmp_path: Path, photo_files: dict[str, Path]
) -> None:
    right = aws_dlr_model(_with_meta(aws_dir, tmp_path / "a", [1, 224, 224, 3], "NHWC"))
    assert not right.manifest.input_as_is
    backend = backends.create("dlr", right)
    backend.load()
    image = decode(photo_files["coffee"].read_bytes())
    assert right.labels[int(np.argmax(backend.infer(preprocess(image, right.manifest))))] == (
        "espresso"
    )
    backend.close()
    wrong = aws_dlr_model(_with_meta(aws_dir, tmp_path / "b", [1, 3, 224, 224], "NCHW"))
    assert wrong.manifest.input.shape == [1, 3, 224, 224]
    with pytest.raises(ModelError, match=r"input shape is \[1, 224, 224, 3\].*\(NCHW\)"):
        backends.create("dlr", wrong).load()


def test_aws_layout_refuses_a_directory_without_exactly_one_model(
    aws_dir: Path, tmp_path: Path
) -> None:
    directory = tmp_path / aws_dir.name
    shutil.copytree(aws_dir, directory)
    (directory / "compiled.so").unlink()
    with pytest.raises(ModelError, match=r"exactly one \*\.so file, found none"):
        aws_dlr_model(directory)


# --- phone-home, threads, missing runtime (fresh interpreters) ----------------------------------
_PROBE = textwrap.dedent(
    """
    import json, os, socket, sys
    attempts = []
    def refuse(*args, **kwargs):
        attempts.append(repr(args[:2]))
        raise OSError("network disabled by the test")
    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse
    socket.create_connection = refuse
    socket.getaddrinfo = refuse
    mode = sys.argv[1]
    if mode == "readonly":
        import pathlib
        def no_write(self, *args, **kwargs):
            raise PermissionError("read-only install")
        pathlib.Path.write_text = no_write
    if mode in ("plain", "imported-first"):
        import dlr
    if mode == "plain":
        dlr.DLRModel(sys.argv[2] + "/dlr", "cpu", 0)  # DLR reports a model load
        how = "none"
    else:
        from ggvision.serving.models.backends import dlr as backend_module
        how = "config" if mode == "writable" else "stub"
        dlr = backend_module.dlr
    out = {"attempts": attempts, "dlr_file": dlr.__file__, "how": how}
    if mode != "plain":
        from ggvision.serving.models import backends
        from ggvision.serving.models.store import Model
        import numpy as np
        model = Model.load(sys.argv[2])
        b = backends.create("dlr", model, threads=3)
        b.load()
        b.infer(np.zeros((1, 224, 224, 3), np.float32))
        out["threads_env"] = os.environ.get("TVM_NUM_THREADS")
    out["attempts"] = attempts
    print(json.dumps(out))
    """
)


def _fresh_dlr(tmp_path: Path) -> Path:
    """A copy of the installed dlr package that has never been imported (no ccm_config.json)."""
    import importlib.util

    spec = importlib.util.find_spec("dlr")
    assert spec is not None and spec.submodule_search_locations
    site = tmp_path / "site"
    shutil.copytree(
        next(iter(spec.submodule_search_locations)),
        site / "dlr",
        ignore=shutil.ignore_patterns("ccm_config.json", "__pycache__"),
    )
    return site


def _probe(site: Path, mode: str, model_dir: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    env.pop("TVM_NUM_THREADS", None)
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, mode, str(model_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["dlr_file"].startswith(str(site)), "the test must use the fresh copy"
    return result


def test_dlr_on_its_own_phones_home_on_model_load(dlr_dir: Path, tmp_path: Path) -> None:
    # The control: the probe sees DLR's call home when nothing switches it off.
    result = _probe(_fresh_dlr(tmp_path), "plain", dlr_dir)
    assert result["attempts"], "DLR made no network call: the probe would not see one"


def test_the_backend_switches_phone_home_off_before_import_without_any_network_call(
    dlr_dir: Path, tmp_path: Path
) -> None:
    site = _fresh_dlr(tmp_path)
    result = _probe(site, "writable", dlr_dir)
    assert result["attempts"] == []
    config = json.loads((site / "dlr" / "counter" / "ccm_config.json").read_text())
    assert config["enable_phone_home"] is False
    assert result["threads_env"] == "3"


def test_dlr_imported_before_the_backend_sends_nothing_on_model_load(
    dlr_dir: Path, tmp_path: Path
) -> None:
    site = _fresh_dlr(tmp_path)
    result = _probe(site, "imported-first", dlr_dir)
    assert result["attempts"] == []
    assert result["threads_env"] == "3"


def test_a_read_only_dlr_install_gets_a_silent_counter_instead(
    dlr_dir: Path, tmp_path: Path
) -> None:
    site = _fresh_dlr(tmp_path)
    result = _probe(site, "readonly", dlr_dir)
    assert result["attempts"] == []
    assert not (site / "dlr" / "counter" / "ccm_config.json").exists()


def test_libdlr_itself_cannot_open_a_socket(dlr_dir: Path) -> None:
    # The probes above patch Python's sockets; the native runtime imports no socket function.
    if shutil.which("nm") is None:
        pytest.skip("nm (binutils) is needed to list libdlr.so's imports")
    from dlr.libpath import find_lib_path

    import ggvision.serving.models.backends.dlr  # noqa: F401 - dlr, imported without phone-home

    library = find_lib_path()
    imports = subprocess.run(
        ["nm", "-D", "--undefined-only", library], capture_output=True, text=True, check=True
    ).stdout
    symbols = {line.split()[-1].split("@")[0] for line in imports.splitlines() if line.strip()}
    assert "malloc" in symbols  # the listing is real
    assert not symbols & {"socket", "connect", "getaddrinfo", "gethostbyname", "sendto"}


def test_without_the_extra_the_error_names_it() -> None:
    code = textwrap.dedent(
        """
        import sys, importlib.abc
        class Hide(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "dlr" or name.startswith("dlr."):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None
        sys.meta_path.insert(0, Hide())
        from pathlib import Path
        from ggvision.serving.models import backends
        from ggvision.serving.models.store import Manifest, Model
        from ggvision_classifier.app import DISTRIBUTION
        m = Manifest.model_validate({"name": "x", "version": "1", "variant": "x",
            "format": "dlr", "precision": "fp32", "file": "m.so", "input": {"shape": [1]}})
        try:
            backends.create("dlr", Model(Path("/nonexistent"), m, []), distribution=DISTRIBUTION)
        except backends.BackendUnavailable as exc:
            print(exc)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "install extra [dlr]" in proc.stdout
    assert "ggvision-classifier[dlr]" in proc.stdout


# --- through the classifier component on the IPC core ------------------------------------------
def _serve(
    overrides: dict[str, Any], store: Path, photo_files: dict[str, Path], state: str = "RUNNING"
) -> Iterator[Running]:
    yield from serve(store, {"threads": 1, **overrides}, photos=photo_files.values(), state=state)


def test_through_ipc_dlr_agrees_with_onnx_on_every_photo(
    dlr_dir: Path, store: Path, onnx_ref: Loaded, photo_files: dict[str, Path]
) -> None:
    for running in _serve({"modelKey": VARIANT, "backend": "dlr"}, store, photo_files):
        for name, path in photo_files.items():
            result = running.ask(
                {"id": f"dlr-{name}", "image": {"path": str(running.images / path.name)}}
            )
            assert result["status"] == "ok", result
            assert result["model"] == {
                "name": "efficientnet-lite0",
                "version": "1.0.0",
                "backend": "dlr",
                "precision": "fp32",
            }
            assert result["predictions"][0]["index"] == onnx_top1(onnx_ref, path), name
        bad = running.ask({"id": "dlr-missing", "image": {"path": "/nonexistent/x.jpg"}})
        assert bad["status"] == "error"


def test_through_ipc_aws_layout_by_model_resource_key(
    aws_dir: Path, photo_files: dict[str, Path]
) -> None:
    overrides = {
        "modelStoreLayout": "aws-dlr",
        "modelStorePath": str(aws_dir.parent),
        "modelResourceKey": {platform.machine(): aws_dir.name},
    }
    for running in _serve(overrides, aws_dir.parent, photo_files):
        result = running.ask(
            {"id": "aws-coffee", "image": {"path": str(running.images / "coffee.jpg")}}
        )
        assert result["status"] == "ok", result
        assert result["model"]["name"] == aws_dir.name
        assert result["model"]["backend"] == "dlr"
        top = result["predictions"][0]
        assert top["label"] == "espresso"
        assert 0.5 < top["score"] <= 1.0  # probabilities from the model, not re-softmaxed


def test_a_layout_mismatch_through_ipc_is_answered_model_unavailable_with_the_reason(
    dlr_dir: Path, tmp_path: Path, photo_files: dict[str, Path]
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    directory = _copy(dlr_dir, store)
    _edit_manifest(directory, input={"shape": [1, 3, 224, 224], "layout": "NCHW"})
    # The component reports ERRORED and answers every request with the reason.
    for running in _serve({"modelKey": VARIANT}, store, photo_files, state="ERRORED"):
        result = running.ask({"id": "nchw", "image": {"path": str(running.images / "coffee.jpg")}})
        assert (result["status"], result["error"]["code"]) == ("error", "MODEL_UNAVAILABLE")
        assert "input.layout" in result["error"]["message"]
