"""Weight imprinting on the real embedding variants with real photos: k-shot accuracy on held-out
views, the two modes, every runtime's embedding against the float one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ggvision.serving.imprint import ClassStore
from ggvision.serving.models.store import file_sha256
from ggvision.testing import views as V
from tests.imprint.conftest import (
    EMBEDDING_VARIANTS,
    FP32_TWIN,
    Embedder,
    embedder,
    embedding_model,
)


def top1(e: Embedder, store: ClassStore, test: dict[str, list[np.ndarray]], mode: str) -> float:
    task = e.task.with_classes(store.classes(), mode)  # type: ignore[arg-type]
    labels = task.labels()
    right = total = 0
    for label, images in test.items():
        for img in images:
            answer = task.postprocess(e.raw(img), e.model, top_k=1, threshold=0.0)
            right += int(labels[answer.predictions[0].index] == label)
            total += 1
    return right / total


def learn(e: Embedder, shots: dict[str, list[np.ndarray]], k: int) -> ClassStore:
    store = ClassStore(e.task.dim)
    for label, images in shots.items():
        for img in images[:k]:
            store.add(label, e.raw(img))
    return store


@pytest.fixture(scope="module")
def objects() -> tuple[dict[str, list[np.ndarray]], dict[str, list[np.ndarray]]]:
    """6 objects: 10 shot views each (seed 1), 6 held-out views each (seed 2)."""
    return V.object_views(10, 1), V.object_views(6, 2)


@pytest.mark.parametrize("mode", ["replace", "extend"])
def test_object_views_k_shots(
    int8: Embedder, objects: tuple[dict[str, list[np.ndarray]], ...], mode: str
) -> None:
    shots, test = objects
    chance = 1 / len(shots)
    acc = {k: top1(int8, learn(int8, shots, k), test, mode) for k in (1, 5, 10)}
    assert acc[1] >= 0.6 > 3 * chance, acc
    assert acc[5] >= 0.8 and acc[10] >= 0.8, acc
    assert acc[10] >= acc[1], acc


def test_lfw_faces_k_shots(int8: Embedder) -> None:
    """lfw_subset: faces vs other, k shots per class, the other 50 of each held out; the mean
    over 4 seeded draws."""
    data = {label: [int8.raw(x) for x in imgs] for label, imgs in V.lfw().items()}
    acc = {}
    for k in (1, 5, 10):
        runs = []
        for seed in range(4):
            rng = np.random.default_rng(seed)
            store = ClassStore(int8.task.dim)
            held: list[tuple[str, np.ndarray]] = []
            for label, embs in data.items():
                order = rng.permutation(len(embs))
                for i in order[:k]:
                    store.add(label, embs[i])
                held += [(label, embs[i]) for i in order[50:]]
            classes = store.classes()
            runs.append(
                np.mean(
                    [
                        classes.labels[int(np.argmax(classes.cosines(int8.task.embed(e))))] == lab
                        for lab, e in held
                    ]
                )
            )
        acc[k] = float(np.mean(runs))
    assert acc[1] >= 0.75, acc  # chance 0.5
    assert acc[10] >= 0.9, acc
    assert acc[10] >= acc[1], acc


def test_extend_keeps_imagenet_answers(int8: Embedder, objects: tuple[dict, ...]) -> None:
    """Learned classes beside ImageNet: the cat is still a cat, the classes' own views answer
    as them, and with nothing learned the answers are the head's."""
    shots, test = objects
    plain = int8.task
    task = plain.with_classes(learn(int8, shots, 5).classes(), "extend")
    cats = {"tiger cat", "Egyptian cat", "tabby", "lynx"}
    for name in V.OTHERS:
        img = V.photo(name)
        before = plain.postprocess(int8.raw(img), int8.model, top_k=5, threshold=0.0)
        after = task.postprocess(int8.raw(img), int8.model, top_k=5, threshold=0.0)
        assert after.predictions == before.predictions, name  # ImageNet answer untouched
        assert all(p.index < 1000 for p in after.predictions)
    cat = task.postprocess(int8.raw(V.photo("chelsea")), int8.model, top_k=1, threshold=0.0)
    assert cat.predictions[0].label in cats
    rocket = task.postprocess(int8.raw(test["rocket"][0]), int8.model, top_k=1, threshold=0.0)
    assert rocket.predictions[0].label == "rocket" and rocket.predictions[0].index >= 1000


@pytest.mark.parametrize("variant", EMBEDDING_VARIANTS)
def test_every_runtime_imprints(variant: str, objects: tuple[dict, ...]) -> None:
    """Each embedding variant on its own runtime: 5 shots answer the held-out views, and the
    head on its embedding gives the float model's top-1 on the cat."""
    e = embedder(variant)
    try:
        shots, test = objects
        assert top1(e, learn(e, shots, 5), test, "replace") >= 0.8
        cat = e.task.postprocess(e.raw(V.photo("chelsea")), e.model, top_k=1, threshold=0.0)
        assert cat.predictions[0].label in {"tiger cat", "Egyptian cat", "tabby"}
    finally:
        e.backend.close()


@pytest.mark.parametrize("variant", sorted(FP32_TWIN))
def test_embedding_agrees_with_its_float_twin(variant: str) -> None:
    """The torchscript int8 and DLR embeddings against their fp32 twins on real photos (the
    build checks the 7 sample photos and crops; here the 15 other photos, textures included, and
    views): DLR is the same float model compiled (cosine 1); int8 measured 0.939 / 0.766 (x86,
    grass the lowest) and 0.957 / 0.739 (qnnpack), onnx-int8's 0.925 / 0.707, tflite-int8's 0.984 /
    0.929."""
    images = [V.photo(n) for n in V.OTHERS] + [v[0] for v in V.object_views(2, 3).values()]
    e, twin = embedder(variant), embedder(FP32_TWIN[variant])
    try:
        cos = np.array(
            [float(e.task.embed(e.raw(img)) @ twin.task.embed(twin.raw(img))) for img in images]
        )
    finally:
        e.backend.close()
        twin.backend.close()
    if e.model.manifest.precision == "fp32":
        assert cos.min() >= 0.9999, cos
    else:
        assert cos.mean() >= 0.9 and cos.min() >= 0.7, cos


def test_the_dlr_embedding_is_built_as_a_store_variant() -> None:
    """make models-dlr's embedding: pixels in (normalisation in the graph), the embedding out, the
    ImageNet head beside it, listed in index.json, compiled from recorded inputs."""
    model = embedding_model("dlr-fp32-embedding")
    m = model.manifest
    assert (m.format, m.precision, m.task) == ("dlr", "fp32", "embedding")
    assert m.output.kind == "embedding"
    assert m.input.shape == [1, 224, 224, 3] and m.preprocess.mean == [0, 0, 0]
    assert m.embedding is not None and m.embedding.dim == 1280
    extra = m.embedding.model_extra or {}
    head = model.directory / m.embedding.head
    assert file_sha256(head) == extra["head_sha256"]
    assert extra["source"] == "onnx-fp32-embedding"
    index = json.loads((model.directory.parent / "index.json").read_text(encoding="utf-8"))
    (entry,) = [e for e in index["variants"] if e["variant"] == "dlr-fp32-embedding"]
    assert (entry["built_by"], entry["task"]) == ("models-dlr", "embedding")
    assert "dlr-fp32-embedding" in index["builds"]
    assert len((model.directory / ".inputs.sha256").read_text().strip()) == 64


def test_a_variant_the_stores_build_knew_but_lacks_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The skip rule: a missing variant is skipped (or failed under GGV_REQUIRE_MODELS=1) only
    when the store's index.json does not list it in ``builds``."""
    monkeypatch.setenv("GGV_MODEL_STORE", str(tmp_path))
    monkeypatch.delenv("GGV_REQUIRE_MODELS", raising=False)
    (tmp_path / "index.json").write_text(json.dumps({"builds": ["dlr-fp32-embedding"]}))
    with pytest.raises(pytest.fail.Exception, match="was built with dlr-fp32-embedding"):
        embedding_model("dlr-fp32-embedding")
    with pytest.raises(pytest.skip.Exception):
        embedding_model("torchscript-int8-x86-embedding")
