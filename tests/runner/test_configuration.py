from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ggvision.errors import ConfigError
from ggvision.runner.configuration import (
    initial_configuration,
    normalise_update,
    read_update_argument,
)
from ggvision.runner.recipe import parse_recipe

from .conftest import simple_recipe

DEFAULTS: dict[str, Any] = {
    "model": {"name": "resnet50", "inputSize": 224, "labels": ["cat", "dog"]},
    "threshold": 0.3,
    "accessControl": {"aws.greengrass.ipc.pubsub": {}},
}


def recipe_with(defaults: dict[str, Any]) -> Any:
    return parse_recipe(simple_recipe("com.example.C", {"Run": "x"}, config=defaults))


def test_no_update_gives_a_copy_of_the_defaults() -> None:
    recipe = recipe_with(DEFAULTS)
    config = initial_configuration(recipe, None)
    assert config == DEFAULTS
    config["model"]["name"] = "changed"
    assert recipe.default_configuration["model"]["name"] == "resnet50"


def test_merge_is_deep_and_lists_replace() -> None:
    config = initial_configuration(
        recipe_with(DEFAULTS),
        {"MERGE": {"model": {"name": "mobilenet", "labels": ["bird"]}, "extra": {"a": 1}}},
    )
    assert config["model"] == {"name": "mobilenet", "inputSize": 224, "labels": ["bird"]}
    assert config["extra"] == {"a": 1}
    assert config["threshold"] == 0.3


def test_reset_runs_before_merge() -> None:
    update = {"RESET": ["/model"], "MERGE": {"model": {"inputSize": 320}}}
    config = initial_configuration(recipe_with(DEFAULTS), update)
    assert config["model"] == {"name": "resnet50", "inputSize": 320, "labels": ["cat", "dog"]}


def test_reset_whole_document_then_merge() -> None:
    config = initial_configuration(recipe_with(DEFAULTS), {"RESET": [""], "MERGE": {"x": 1}})
    assert config == {**DEFAULTS, "x": 1}


def test_update_document_accepts_any_case_and_merge_as_string() -> None:
    doc = {"com.example.C": {"merge": json.dumps({"threshold": 0.5}), "Reset": ["/model/name"]}}
    assert normalise_update(doc) == {
        "com.example.C": {"MERGE": {"threshold": 0.5}, "RESET": ["/model/name"]}
    }


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "must be an object"),
        ({"C": []}, "update for C must be an object"),
        ({"C": {"PATCH": {}}}, "keys must be MERGE and RESET"),
        ({"C": {"MERGE": [1]}}, "MERGE must be an object"),
        ({"C": {"MERGE": "{not json"}}, "MERGE string is not JSON"),
        ({"C": {"RESET": "/a"}}, "RESET must be a list"),
        ({"C": {"RESET": ["a/b"]}}, "must be '' or start with '/'"),
    ],
)
def test_bad_update_documents(doc: Any, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        normalise_update(doc, "upd.json")
    assert message in str(err.value)


def test_update_argument_inline_or_file(tmp_path: Path) -> None:
    inline = '{"C": {"MERGE": {"a": 1}}}'
    path = tmp_path / "update.json"
    path.write_text(inline)
    assert read_update_argument(inline) == read_update_argument(str(path))
    with pytest.raises(ConfigError) as err:
        read_update_argument(str(tmp_path / "missing.json"))
    assert "missing.json" in str(err.value)
