"""Classifier configuration: the recipe's defaults, validation errors, and ``threads: 0``."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ggvision_classifier.config import ClassifierConfig

from ggvision.errors import ConfigError

RECIPE = Path(__file__).resolve().parents[2] / "components/com.custom.ImageClassifier/recipe.yaml"


def test_recipe_defaults_are_the_model_defaults() -> None:
    defaults = yaml.safe_load(RECIPE.read_text())["ComponentConfiguration"]["DefaultConfiguration"]
    cfg = ClassifierConfig.from_raw(defaults)
    assert cfg.threads == defaults["threads"] and cfg.inference_threads == cfg.threads


@pytest.mark.parametrize(("cpus", "want"), [(1, 1), (2, 1), (4, 3), (16, 4), (None, 1)])
def test_zero_threads_leaves_a_core_for_the_pipeline(
    monkeypatch: pytest.MonkeyPatch, cpus: int | None, want: int
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: cpus)
    assert ClassifierConfig.from_raw({"threads": 0}).inference_threads == want


def test_negative_threads_are_refused_with_the_key() -> None:
    with pytest.raises(ConfigError, match="threads"):
        ClassifierConfig.from_raw({"threads": -1})
