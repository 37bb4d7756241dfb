"""The class store of weight imprinting: the arithmetic, the limits, the atomic persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ggvision.serving.imprint import (
    THRESHOLD_ONE_SHOT,
    ClassStore,
    LearnError,
    Limits,
    l2norm,
    threshold,
)

DIM = 16


def vec(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(DIM).astype(np.float32)


def test_weight_is_normalised_sum_of_normalised_shots() -> None:
    store = ClassStore(DIM)
    a, b = vec(1) * 5, vec(2) * 0.1
    assert store.add("x", a) == 1
    assert store.add("x", b) == 2
    classes = store.classes()
    want = l2norm(l2norm(a) + l2norm(b))
    np.testing.assert_allclose(classes.weights[0], want, rtol=1e-6)
    assert classes.counts == (2,)
    np.testing.assert_allclose(classes.cosines(l2norm(a))[0], float(want @ l2norm(a)), rtol=1e-6)


def test_threshold_is_leave_one_out() -> None:
    assert threshold(l2norm(vec(1))[None]) == THRESHOLD_ONE_SHOT
    shots = l2norm(np.stack([vec(i) for i in range(4)]))
    loo = [float(l2norm(shots.sum(0) - s) @ s) for s in shots]
    assert threshold(shots) == pytest.approx(np.clip(min(loo) - 0.15, 0.45, 0.75), abs=1e-6)


@pytest.mark.parametrize(
    "label", ["", "a" * 65, "has/slash", "-dash-first", "new\nline", 7, None, "ünï"]
)
def test_bad_labels_are_refused(label: object) -> None:
    store = ClassStore(DIM)
    with pytest.raises(LearnError) as info:
        store.add(label, vec(0))  # type: ignore[arg-type]
    assert info.value.code == "INVALID_LABEL"
    assert store.counts() == {}


def test_limits() -> None:
    store = ClassStore(DIM, Limits(max_shots=2, max_classes=2))
    store.add("a", vec(0))
    store.add("a", vec(1))
    with pytest.raises(LearnError) as shots:
        store.add("a", vec(2))
    store.add("b", vec(3))
    with pytest.raises(LearnError) as classes:
        store.add("c", vec(4))
    assert (shots.value.code, classes.value.code) == ("LIMIT_REACHED", "LIMIT_REACHED")
    assert "maxShots" in shots.value.message and "maxClasses" in classes.value.message
    assert store.counts() == {"a": 2, "b": 1}


def test_bad_embeddings_are_refused() -> None:
    store = ClassStore(DIM)
    for bad in (np.zeros(DIM), np.full(DIM, np.nan), np.ones(DIM + 1)):
        with pytest.raises(LearnError):
            store.add("a", bad)
    assert store.counts() == {}


def test_remove_reset() -> None:
    store = ClassStore(DIM)
    store.add("a", vec(0))
    store.add("b", vec(1))
    assert store.remove("a") == 1
    with pytest.raises(LearnError) as info:
        store.remove("a")
    assert info.value.code == "UNKNOWN_LABEL"
    assert store.reset() == 1
    assert len(store.classes()) == 0


def test_save_load_round_trip(tmp_path: Path) -> None:
    store = ClassStore(DIM)
    store.meta = {"model": "tflite-int8-embedding"}
    for i in range(5):
        store.add("ab"[i % 2], vec(i))
    path = tmp_path / "learned" / "classes.npz"
    store.save(path)
    back = ClassStore.load(path, DIM)
    assert back.counts() == {"a": 3, "b": 2}
    assert back.meta == {"model": "tflite-int8-embedding"}
    np.testing.assert_allclose(back.classes().weights, store.classes().weights, rtol=1e-6)
    assert [p.name for p in path.parent.iterdir()] == ["classes.npz"]  # no temp file left


def test_a_torn_temp_file_is_ignored_and_the_last_save_survives(tmp_path: Path) -> None:
    path = tmp_path / "classes.npz"
    store = ClassStore(DIM)
    store.add("a", vec(0))
    store.save(path)
    good = path.read_bytes()
    # A crash in the middle of the next save: its temp file half written, never renamed.
    store.add("b", vec(1))
    (tmp_path / ".classes.npz.999.tmp").write_bytes(good[: len(good) // 2])
    assert ClassStore.load(path, DIM).counts() == {"a": 1}
    # The next save replaces the file whole.
    store.save(path)
    assert ClassStore.load(path, DIM).counts() == {"a": 1, "b": 1}


def test_a_corrupt_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "classes.npz"
    path.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(LearnError) as info:
        ClassStore.load(path, DIM)
    assert info.value.code == "CORRUPT"
    store = ClassStore(DIM)
    store.add("a", vec(0))
    store.save(path)
    with pytest.raises(LearnError) as dim:
        ClassStore.load(path, DIM * 2)
    assert dim.value.code == "CORRUPT"
