"""``ggvision learn`` on a folder of real photos: the report, the variant it writes, and that
``ggvision classify`` and the serving library load that variant like any other."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ggvision_classifier import learn_cli

from ggvision.serving.models.store import Model
from ggvision.serving.tasks import get_task
from ggvision.testing import views as V
from tests.imprint.conftest import embedding_model


def ggvision(*args: str, store: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GGV_MODEL_STORE": str(store)}
    return subprocess.run(
        [sys.executable, "-m", "ggvision.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return V.write_folder(tmp_path_factory.mktemp("data"), V.object_views(8, 3))


@pytest.fixture(scope="module")
def learned(tmp_path_factory: pytest.TempPathFactory, data: Path) -> tuple[Path, dict[str, Any]]:
    base = embedding_model("tflite-int8-embedding")
    out = tmp_path_factory.mktemp("store") / "objects"
    proc = ggvision(
        "learn",
        "--data",
        str(data),
        "--output",
        str(out),
        "--base",
        base.directory.name,
        "--test-ratio",
        "0.25",
        "--mode",
        "replace",
        "--json",
        store=base.directory.parent,
    )
    assert proc.returncode == 0, proc.stderr
    return out, json.loads(proc.stdout.strip().splitlines()[-1])


def test_learn_reports_held_out_top1(learned: tuple[Path, dict[str, Any]]) -> None:
    _, report = learned
    assert set(report) == {"top1", "per_class", "train", "test"}
    assert set(report["per_class"]) == set(V.OBJECTS)
    assert (report["train"], report["test"]) == (36, 12)  # 8 a class: 6 shots, 2 held out
    assert report["top1"] >= 0.75  # chance: 1/6


def test_the_variant_loads_and_classifies(learned: tuple[Path, dict[str, Any]], data: Path) -> None:
    out, _ = learned
    model = Model.load(out)
    assert model.manifest.task == "imprinted"
    assert model.manifest.imprint is not None and model.manifest.imprint.mode == "replace"
    assert model.labels == sorted(V.OBJECTS)
    assert get_task("imprinted").bind(model).labels() == sorted(V.OBJECTS)
    index = (
        json.loads((out.parent / "index.json").read_text())
        if (out.parent / "index.json").exists()
        else None
    )
    assert index is None  # a bare directory gets no index.json
    image = data / "rocket" / "000.png"
    proc = ggvision(
        "classify",
        str(image),
        "--model-store",
        str(out.parent),
        "--variant",
        out.name,
        "--json",
        store=out.parent,
    )
    assert proc.returncode == 0, proc.stderr
    (result,) = json.loads(proc.stdout)
    assert result["predictions"][0]["label"] == "rocket"


def test_extend_variant_keeps_the_cat(tmp_path: Path, data: Path) -> None:
    base = embedding_model("tflite-int8-embedding")
    report = learn_cli.learn(
        data,
        tmp_path / "objects",
        test_ratio=0.0,
        mode="extend",
        store=base.directory.parent,
        base=base.directory.name,
    )
    assert report["top1"] is None and report["train"] == 48
    cat = V.photo("chelsea")
    from PIL import Image

    Image.fromarray(cat).save(tmp_path / "chelsea.png")
    from ggvision_classifier import classify_cli

    (result,) = classify_cli.run([tmp_path / "chelsea.png"], tmp_path, "objects", top_k=3)
    assert result["predictions"][0]["label"] in {"tiger cat", "Egyptian cat", "tabby"}
    assert len(Model.load(tmp_path / "objects").labels) == 1000 + len(V.OBJECTS)


def test_learn_errors(tmp_path: Path) -> None:
    base = embedding_model("tflite-int8-embedding")
    out = tmp_path / "o" / "v"

    def learn(data: Path, *more: str) -> subprocess.CompletedProcess[str]:
        return ggvision(
            "learn", "--data", str(data), "--output", str(out), *more, store=base.directory.parent
        )

    (tmp_path / "empty").mkdir()
    proc = learn(tmp_path / "empty")
    assert proc.returncode == 2 and "no class folders" in proc.stderr
    bad = tmp_path / "bad"
    V.write_folder(bad, {"has$dollar": V.object_views(2, 1)["rocket"]})
    proc = learn(bad, "--base", base.directory.name)
    assert proc.returncode == 2 and "label may hold only" in proc.stderr
    assert not (tmp_path / "o" / "v").exists()
    torn = tmp_path / "torn"
    V.write_folder(torn, {"rocket": V.object_views(2, 1)["rocket"]})
    (torn / "rocket" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    proc = learn(torn, "--base", base.directory.name)
    assert proc.returncode == 1 and "broken.png" in proc.stderr
    assert not (tmp_path / "o" / "v").exists()
    proc = learn(bad, "--base", "tflite-int8")
    assert proc.returncode == 2


def test_learn_list_counts_a_work_dirs_classes(tmp_path: Path) -> None:
    """``ggvision learn list``: nothing learned yet, then a saved store counted (no model
    needed, no --output)."""
    import numpy as np

    from ggvision.serving.imprint import ClassStore

    empty = ggvision("learn", "list", "--work-dir", str(tmp_path), "--json", store=tmp_path)
    assert empty.returncode == 0, empty.stderr
    assert json.loads(empty.stdout) == {"classes": 0, "shots": 0, "variant": None, "per_class": {}}
    store = ClassStore(4)
    store.meta = {"model": "onnx-int8-embedding"}
    for label, n in (("mug", 2), ("cup", 3)):
        for i in range(n):
            store.add(label, np.arange(4.0) + i)
    store.save(tmp_path / learn_cli.LEARNED_FILE)
    out = ggvision("learn", "list", "--work-dir", str(tmp_path), "--json", store=tmp_path)
    assert json.loads(out.stdout) == {
        "classes": 2,
        "shots": 5,
        "variant": "onnx-int8-embedding",
        "per_class": {"mug": 2, "cup": 3},
    }
    text = ggvision("learn", "list", "--work-dir", str(tmp_path), store=tmp_path)
    assert text.stdout.splitlines()[0] == "2 classes, 5 shots (onnx-int8-embedding)"
    missing = ggvision("learn", "list", store=tmp_path)
    assert missing.returncode == 2 and "--work-dir is required" in missing.stderr
    no_output = ggvision("learn", "--data", str(tmp_path), store=tmp_path)
    assert no_output.returncode == 2 and "--output is required" in no_output.stderr
