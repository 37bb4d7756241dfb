from __future__ import annotations

from pathlib import Path

import pytest

from ggvision.errors import RecipeError
from ggvision.runner.variables import ComponentPaths, Context, interpolate, lookup_pointer

ROOT = Path("/tmp/ggv-root")
STORE = "variant.DLR.ImageClassification.ModelStore"


def paths(name: str, version: str, config: dict[str, object]) -> ComponentPaths:
    return ComponentPaths(
        artifacts=ROOT / "packages/artifacts" / name / version,
        decompressed=ROOT / "packages/artifacts-unarchived" / name / version,
        work=ROOT / "work" / name,
        configuration=config,
    )


CTX = Context(
    component="com.custom.ImageClassifier",
    own=paths(
        "com.custom.ImageClassifier",
        "1.0.0",
        {
            "modelDir": "resnet50",
            "maxResults": 5,
            "enabled": True,
            "threshold": 0.3,
            "labels": ["cat", "dog"],
            "nested": {"a/b": {"~x": "escaped"}},
            "nothing": None,
        },
    ),
    dependencies={STORE: paths(STORE, "2.1.4", {"modelName": "DLR-resnet50"})},
    thing_name="my-thing",
    root=ROOT,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "{artifacts:path}/main.py",
            f"{ROOT}/packages/artifacts/com.custom.ImageClassifier/1.0.0/main.py",
        ),
        (
            "{artifacts:decompressedPath}",
            f"{ROOT}/packages/artifacts-unarchived/com.custom.ImageClassifier/1.0.0",
        ),
        ("cd {work:path}", f"cd {ROOT}/work/com.custom.ImageClassifier"),
        ("{iot:thingName}", "my-thing"),
        ("{kernel:rootPath}", str(ROOT)),
        ("--model {configuration:/modelDir}", "--model resnet50"),
        ("{configuration:/maxResults}", "5"),
        ("{configuration:/enabled}", "true"),
        ("{configuration:/threshold}", "0.3"),
        ("{configuration:/labels}", '["cat","dog"]'),
        ("{configuration:/labels/1}", "dog"),
        ("{configuration:/nested/a~1b/~0x}", "escaped"),
        ("{configuration:/nothing}", "null"),
        (f"{{{STORE}:artifacts:path}}", f"{ROOT}/packages/artifacts/{STORE}/2.1.4"),
        (
            f"{{{STORE}:artifacts:decompressedPath}}/{{{STORE}:configuration:/modelName}}",
            f"{ROOT}/packages/artifacts-unarchived/{STORE}/2.1.4/DLR-resnet50",
        ),
        (f"{{{STORE}:work:path}}", f"{ROOT}/work/{STORE}"),
        # not recipe variables: left alone
        (
            "echo ${HOME:-/tmp} ${PATH:0:5} {not a var}",
            "echo ${HOME:-/tmp} ${PATH:0:5} {not a var}",
        ),
        ("awk '{print $1}'", "awk '{print $1}'"),
    ],
)
def test_every_variable(text: str, expected: str) -> None:
    assert interpolate(text, CTX, "recipe.yaml: Lifecycle.Run") == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{configuration:/missing}", "no configuration value at '/missing'"),
        ("{artifacts:zipPath}", "unknown key 'zipPath'"),
        ("{iot:thingArn}", "unknown key 'thingArn'"),
        ("{com.other.Thing:artifacts:path}", "com.other.Thing is not in ComponentDependencies"),
        (f"{{{STORE}:iot:thingName}}", "only artifacts, configuration and work"),
        (f"{{{STORE}:configuration:/nope}}", "no configuration value at '/nope'"),
    ],
)
def test_unresolvable_variables_are_errors(text: str, message: str) -> None:
    with pytest.raises(RecipeError) as err:
        interpolate(text, CTX, "recipe.yaml: Lifecycle.Run.Script")
    assert str(err.value).startswith("recipe.yaml: Lifecycle.Run.Script: ")
    assert message in str(err.value)


def test_lookup_pointer_whole_document() -> None:
    assert lookup_pointer({"a": 1}, "") == {"a": 1}
    with pytest.raises(KeyError):
        lookup_pointer({"a": 1}, "a")
