"""Fixtures of the reliability tests: a real classifier process on a real IPC core, fed by the
real awsiotsdk client, on the default model (or, for the big burst, the fake backend)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.classifier.conftest import REPO, default_store
from tests.classifier.test_service import Running, serve

__all__ = ["REPO", "Running", "fake_store", "serve"]


def fake_store(root: Path, *, num_classes: int = 10) -> Path:
    """A model store with one variant, ``fake``, for the fake backend (which never opens its
    model file): the pipeline runs for real, only the inference is a stand-in."""
    variant = root / "fake"
    variant.mkdir(parents=True, exist_ok=True)
    (variant / "absent.tflite").write_bytes(b"not a model")
    (variant / "labels.txt").write_text("\n".join(f"class{i}" for i in range(num_classes)))
    manifest = {
        "name": "fake",
        "version": "0",
        "variant": "fake",
        "format": "tflite",
        "precision": "fp32",
        "file": "absent.tflite",
        "num_classes": num_classes,
        "input": {"shape": [1, 224, 224, 3], "layout": "NHWC", "dtype": "float32"},
    }
    (variant / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture(scope="module")
def classifier() -> Iterator[Running]:
    """The classifier on the recipe's default model (tflite-int8), queue of 8."""
    yield from serve(default_store(), {})
