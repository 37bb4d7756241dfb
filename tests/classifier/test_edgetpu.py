"""The Edge TPU path: ``*_edgetpu.tflite`` models on the TFLite backend with the
``libedgetpu.so.1`` delegate. No Edge TPU exists here, so the tests take the real failure paths
of this machine (the library is missing) and of a stand-in ``libedgetpu.so.1``, built by the test
with gcc, that exports the TFLite external-delegate entry points and, like the real library
without a device, reports an error and returns no delegate. The model is the store's int8 TFLite
model under an Edge TPU file name (it runs on the CPU too, so a CPU fallback can answer)."""

from __future__ import annotations

import ctypes.util
import json
import logging
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ggvision_classifier.app import ROLE

from ggvision.serving.models import backends
from ggvision.serving.models.backends.tflite import EDGETPU_LIBRARY
from ggvision.serving.models.store import Model, ModelError
from tests.classifier.conftest import Loaded, require_runtime
from tests.classifier.test_dlr import _serve

VARIANT = "edgetpu-int8"

FAKE_EDGETPU = r"""
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

/* TFLite's external delegate plugin interface, as libedgetpu.so.1 exports it. */
void *tflite_plugin_create_delegate(char **keys, char **values, size_t num_options,
                                    void (*report_error)(const char *)) {
  const char *marker = getenv("GGV_FAKE_EDGETPU_MARKER");
  if (marker != NULL) {
    FILE *f = fopen(marker, "a");
    if (f != NULL) {
      for (size_t i = 0; i < num_options; ++i) fprintf(f, "%s=%s\n", keys[i], values[i]);
      fprintf(f, "create_delegate\n");
      fclose(f);
    }
  }
  if (report_error != NULL) report_error("fake libedgetpu: no Edge TPU device is connected");
  return NULL;
}

void tflite_plugin_destroy_delegate(void *delegate) { (void)delegate; }
"""


@pytest.fixture(scope="module")
def fake_edgetpu(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the stand-in ``libedgetpu.so.1``."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build the stand-in libedgetpu.so.1")
    folder = tmp_path_factory.mktemp("fake-edgetpu")
    (folder / "fake_edgetpu.c").write_text(FAKE_EDGETPU)
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-o", str(folder / EDGETPU_LIBRARY), "fake_edgetpu.c"],
        cwd=folder,
        check=True,
    )
    return folder


@pytest.fixture(scope="module")
def edgetpu_store(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model store with ``edgetpu-int8``: the int8 TFLite model as ``model_edgetpu.tflite``."""
    require_runtime("ai_edge_litert")
    root = tmp_path_factory.mktemp("edgetpu-store")
    target = root / VARIANT
    shutil.copytree(store / "tflite-int8", target)
    (target / "model.tflite").rename(target / "model_edgetpu.tflite")
    manifest = json.loads((target / "manifest.json").read_text())
    manifest.update(variant=VARIANT, file="model_edgetpu.tflite")
    (target / "manifest.json").write_text(json.dumps(manifest))
    return root


def _backend(edgetpu_store: Path, **options: Any) -> backends.Backend:
    model = Model.load(edgetpu_store / VARIANT)
    return backends.create("tflite", model, options=options, events=ROLE)


def test_an_edgetpu_model_asks_for_libedgetpu_and_this_machine_has_none(
    edgetpu_store: Path,
) -> None:
    if ctypes.util.find_library("edgetpu"):
        pytest.skip("this machine has an Edge TPU runtime")
    backend = _backend(edgetpu_store)  # no delegate configured: the file name selects it
    with pytest.raises(ModelError) as info:
        backend.load()
    message = str(info.value)
    assert f"delegate {EDGETPU_LIBRARY} cannot be loaded" in message
    assert "'cpu'" in message  # names the fallback


def test_the_stand_in_library_is_reached_with_the_options_and_its_error_reported(
    edgetpu_store: Path,
    fake_edgetpu: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    marker = tmp_path / "calls"
    monkeypatch.setenv("GGV_FAKE_EDGETPU_MARKER", str(marker))
    library = str(fake_edgetpu / EDGETPU_LIBRARY)
    backend = _backend(edgetpu_store, delegate=library, delegate_options={"device": "usb"})
    with pytest.raises(ModelError) as info:
        backend.load()
    assert f"delegate {library} cannot be loaded" in str(info.value)
    # The code path went as far as the hardware boundary: the plugin was asked for a delegate.
    assert marker.read_text().splitlines() == ["device=usb", "create_delegate"]


def test_fallback_cpu_runs_the_model_on_the_cpu_and_warns(
    edgetpu_store: Path,
    fake_edgetpu: Path,
    tmp_path: Path,
    photo_files: dict[str, Path],
    reference: dict[str, list[tuple[int, float]]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    marker = tmp_path / "calls"
    monkeypatch.setenv("GGV_FAKE_EDGETPU_MARKER", str(marker))
    library = str(fake_edgetpu / EDGETPU_LIBRARY)
    backend = _backend(edgetpu_store, delegate=library, delegate_fallback="cpu")
    with caplog.at_level(logging.WARNING, logger="ggvision.serving.models.backends.tflite"):
        backend.load()
    assert marker.read_text().splitlines() == ["create_delegate"]
    assert any(getattr(r, "event", None) == "classifier.delegate_fallback" for r in caplog.records)
    item = Loaded(VARIANT, backend.model, backend)
    for photo in ("chelsea", "coffee"):
        assert item.classify(photo_files[photo], k=1)[0][0] == reference[photo][0][0], photo
    backend.close()


def test_a_cpu_fallback_that_cannot_run_the_model_says_why(
    edgetpu_store: Path, tmp_path: Path
) -> None:
    # A real Edge TPU model holds a custom op only the TPU runs; a file that is no TFLite model
    # at all stands in for it here: the fallback fails, with the Edge TPU hint.
    broken = tmp_path / VARIANT
    shutil.copytree(edgetpu_store / VARIANT, broken)
    (broken / "model_edgetpu.tflite").write_bytes(b"not a flatbuffer" * 64)
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest.pop("sha256", None)
    (broken / "manifest.json").write_text(json.dumps(manifest))
    backend = backends.create(
        "tflite",
        Model.load(broken),
        options={"delegate": str(tmp_path / "missing.so"), "delegate_fallback": "cpu"},
    )
    with pytest.raises(ModelError, match="only the Edge TPU runs"):
        backend.load()


# --- through the classifier component on the IPC core ------------------------------------------
@pytest.fixture
def with_fake_on_library_path(
    fake_edgetpu: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """The classifier processes the test starts find the stand-in as ``libedgetpu.so.1``."""
    monkeypatch.setenv("LD_LIBRARY_PATH", str(fake_edgetpu))
    yield fake_edgetpu


def test_through_ipc_fallback_cpu_serves_and_error_refuses_with_the_reason(
    edgetpu_store: Path,
    with_fake_on_library_path: Path,
    photo_files: dict[str, Path],
    reference: dict[str, list[tuple[int, float]]],
) -> None:
    base = {"modelKey": VARIANT, "backend": "tflite"}
    for running in _serve({**base, "delegateFallback": "cpu"}, edgetpu_store, photo_files):
        result = running.ask(
            {"id": "tpu-cpu", "image": {"path": str(running.images / "coffee.jpg")}}
        )
        assert result["status"] == "ok", result
        assert result["predictions"][0]["index"] == reference["coffee"][0][0]
    for running in _serve(base, edgetpu_store, photo_files, state="ERRORED"):
        result = running.ask(
            {"id": "tpu-err", "image": {"path": str(running.images / "coffee.jpg")}}
        )
        assert (result["status"], result["error"]["code"]) == ("error", "MODEL_UNAVAILABLE")
        # The stand-in was found (not "cannot open shared object file") and gave no delegate.
        assert f"Failed to load delegate from {EDGETPU_LIBRARY}" in result["error"]["message"]
