from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ggvision.errors import RecipeError
from ggvision.runner.recipe import (
    Platform,
    SkipIf,
    Step,
    load_recipe,
    load_recipe_dir,
    parse_recipe,
)

from .conftest import RecipeWriter, simple_recipe

AMD64 = Platform({"os": "linux", "architecture": "amd64", "architecture.detail": "x86_64"})
ARM64 = Platform({"os": "linux", "architecture": "aarch64", "architecture.detail": "aarch64"})
PI = Platform({"os": "linux", "architecture": "arm", "architecture.detail": "armv7l"})

CLASSIFIER_YAML = """\
recipeformatversion: '2020-01-25'
componentname: com.custom.ImageClassifier
COMPONENTVERSION: 1.0.0
componentConfiguration:
  defaultConfiguration:
    accessControl:
      aws.greengrass.ipc.pubsub:
        com.custom.ImageClassifier:pubsub:1:
          policyDescription: pub/sub
          operations: [aws.greengrass#PublishToTopic]
          resources: [local/result]
    MaxResults: 5
componentdependencies:
  variant.DLR.ImageClassification.ModelStore:
    versionrequirement: '>=2.1.0 <2.2.0'
    dependencytype: hard
manifests:
  - platform: {OS: linux, Architecture: aarch64}
    lifecycle: {run: arm-run}
  - platform: {os: linux, architecture: amd64}
    lifecycle:
      setenv: {MODEL_DIR: '{variant.DLR.ImageClassification.ModelStore:artifacts:decompressedPath}'}
      install:
        script: pip install -r requirements.txt
        timeout: 300
        requiresprivilege: 'true'
        skipif: onpath cv2-installed
      run: python3 -u {artifacts:path}/main.py
    artifacts:
      - uri: s3://bucket/ImageClassifier/1.0.0/classifier.zip
        unarchive: zip
        permission: {read: all, execute: owner}
"""


def test_keys_are_case_insensitive_and_normalised(tmp_path: Path) -> None:
    path = tmp_path / "classifier.yaml"
    path.write_text(CLASSIFIER_YAML)
    recipe = load_recipe(path)
    assert recipe.name == "com.custom.ImageClassifier"
    assert recipe.version == "1.0.0"
    dep = recipe.dependencies["variant.DLR.ImageClassification.ModelStore"]
    assert (dep.version_requirement, dep.dependency_type) == (">=2.1.0 <2.2.0", "HARD")
    # configuration keys are data, kept exactly as written
    assert recipe.default_configuration["MaxResults"] == 5
    assert (
        "com.custom.ImageClassifier:pubsub:1"
        in (recipe.default_configuration["accessControl"]["aws.greengrass.ipc.pubsub"])
    )
    selected = recipe.select(AMD64)
    assert selected.manifest_index == 1
    install = selected.lifecycle.step("Install")
    assert install == Step(
        script="pip install -r requirements.txt",
        timeout=300.0,
        requires_privilege=True,
        skip_if=SkipIf("onpath", "cv2-installed"),
    )
    assert selected.lifecycle.setenv == {
        "MODEL_DIR": "{variant.DLR.ImageClassification.ModelStore:artifacts:decompressedPath}"
    }
    [art] = selected.artifacts
    assert (art.filename, art.unarchived_name, art.unarchive) == (
        "classifier.zip",
        "classifier",
        "ZIP",
    )
    assert (art.read, art.execute, oct(art.mode)) == ("ALL", "OWNER", "0o544")


def test_json_recipe_loads(write_recipe: RecipeWriter) -> None:
    path = write_recipe(simple_recipe("com.example.A", {"Run": "true"}), fmt="json")
    recipe = load_recipe(path)
    assert recipe.select(AMD64).lifecycle.step("Run") == Step("true")


@pytest.mark.parametrize(
    ("platform", "expected"),
    [(ARM64, "arm64 manifest"), (AMD64, "wildcard manifest"), (PI, "arm via regex")],
)
def test_first_matching_manifest_wins(platform: Platform, expected: str) -> None:
    doc = {
        "ComponentName": "com.example.M",
        "ComponentVersion": "1.0.0",
        "Manifests": [
            {"Platform": {"os": "windows"}, "Lifecycle": {"Run": "windows"}},
            {
                "Platform": {"os": "linux", "architecture": "aarch64"},
                "Lifecycle": {"Run": "arm64 manifest"},
            },
            {
                "Platform": {"os": "linux", "architecture": "/arm|armv7l/"},
                "Lifecycle": {"Run": "arm via regex"},
            },
            {"Platform": {"os": "*"}, "Lifecycle": {"Run": "wildcard manifest"}},
        ],
    }
    run = parse_recipe(doc).select(platform).lifecycle.step("Run")
    assert run is not None and run.script == expected


def test_no_matching_manifest_names_the_platform() -> None:
    doc = simple_recipe("com.example.Win", {"Run": "x"})
    doc["Manifests"][0]["Platform"] = {"os": "windows"}
    recipe = parse_recipe(doc, "win.yaml")
    with pytest.raises(RecipeError) as err:
        recipe.select(AMD64)
    assert "win.yaml" in str(err.value)
    assert "linux/amd64" in str(err.value)


def test_uname_architectures_map_to_greengrass_names(monkeypatch: pytest.MonkeyPatch) -> None:
    import platform as std_platform

    for machine, arch in [("x86_64", "amd64"), ("aarch64", "aarch64"), ("armv7l", "arm")]:
        monkeypatch.setattr(std_platform, "machine", lambda m=machine: m)
        monkeypatch.setattr(std_platform, "system", lambda: "Linux")
        current = Platform.current()
        assert current.attributes["architecture"] == arch
        assert current.attributes["os"] == "linux"
        assert current.attributes["architecture.detail"] == machine


def test_global_lifecycle_and_selections() -> None:
    doc = {
        "ComponentName": "com.example.G",
        "ComponentVersion": "1.0.0",
        "Lifecycle": {
            "Run": "plain run",
            "Setenv": {"A": 1, "B": True},
            "arm": {"Run": "arm run", "Install": "arm install"},
        },
        "Manifests": [
            {"Platform": {"architecture": "arm"}, "Selections": ["arm", "all"]},
            {"Platform": {"os": "linux"}},
        ],
    }
    recipe = parse_recipe(doc)
    arm = recipe.select(PI).lifecycle
    assert arm.step("Run") == Step("arm run")
    assert arm.step("Install") == Step("arm install")
    assert arm.setenv == {"A": "1", "B": "true"}  # from the "all" section
    plain = recipe.select(AMD64).lifecycle
    assert plain.step("Run") == Step("plain run")
    assert plain.step("Install") is None


def test_recipe_without_manifests_runs_anywhere() -> None:
    recipe = parse_recipe(
        {"ComponentName": "a", "ComponentVersion": "0.1.0", "Lifecycle": {"Run": "x"}}
    )
    assert recipe.select(ARM64).lifecycle.step("Run") == Step("x")


def test_default_timeouts() -> None:
    lc = (
        parse_recipe(simple_recipe("a", {"Install": "i", "Run": "r", "Shutdown": "s"}))
        .select(AMD64)
        .lifecycle
    )
    assert (lc.timeout("Install"), lc.timeout("Run"), lc.timeout("Shutdown")) == (
        120.0,
        None,
        15.0,
    )


def _with(path: str, value: Any) -> dict[str, Any]:
    """simple_recipe with one key replaced (``path`` dotted, list indexes as ints)."""
    doc = simple_recipe("com.example.Bad", {"Run": "x"})
    node: Any = doc
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    for p in parents:
        node = node[p]
    node[last] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("ComponentVersion", "1.0", "ComponentVersion: version '1.0' is not MAJOR.MINOR.PATCH"),
        ("ComponentVersion", 1.0, "quote it"),
        ("ComponentName", "../evil", "ComponentName"),
        ("Manifests.0.Lifecycle", {"Run": {"Scirpt": "x"}}, "Manifests[0].Lifecycle.Run.Scirpt"),
        (
            "Manifests.0.Lifecycle",
            {"Run": {"Script": "x", "Timeout": "soon"}},
            "Manifests[0].Lifecycle.Run.Timeout: must be a number",
        ),
        (
            "Manifests.0.Lifecycle",
            {"Install": {"Script": "x", "SkipIf": "maybe x"}},
            "SkipIf: must be 'onpath <cmd>' or 'exists <file>'",
        ),
        ("Manifests.0.Lifecycle", {"Run": {"Timeout": 3}}, "Run.Script: is required"),
        (
            "Manifests.0.Artifacts",
            [{"URI": "s3://b/a.zip", "Unarchive": "TAR"}],
            "Artifacts[0].Unarchive: must be ZIP or NONE",
        ),
        (
            "Manifests.0.Artifacts",
            [{"URI": "s3://b/a", "Permission": {"Read": "everyone"}}],
            "Permission.Read: must be NONE, OWNER or ALL",
        ),
        (
            "ComponentDependencies",
            {"x": {"VersionRequirement": ">=banana"}},
            "ComponentDependencies.x.VersionRequirement",
        ),
        ("ComponentDependencies", {"x": {"DependencyType": "WEAK"}}, "must be HARD or SOFT"),
        ("ComponentDependencies", {"com.example.Bad": {}}, "cannot depend on itself"),
        (
            "ComponentConfiguration",
            {"DefaultConfiguration": {"when": __import__("datetime").date(2024, 1, 1)}},
            "as a date",
        ),
        ("Lifecycle", {"Instal": "x"}, "Lifecycle.Instal: unknown key"),
        ("Colour", "blue", "Colour: unknown key"),
    ],
)
def test_errors_name_file_and_key(path: str, value: Any, message: str) -> None:
    with pytest.raises(RecipeError) as err:
        parse_recipe(_with(path, value), "recipes/bad.yaml")
    assert str(err.value).startswith("recipes/bad.yaml: ")
    assert message in str(err.value)


def test_duplicate_keys_differing_in_case_are_rejected() -> None:
    doc = simple_recipe("a", {"Run": "x"})
    doc["componentName"] = "b"
    with pytest.raises(RecipeError) as err:
        parse_recipe(doc, "dup.yaml")
    assert "given twice" in str(err.value)


def test_bad_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("ComponentName: [unclosed\n")
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    assert str(path) in str(err.value)
    assert "not valid YAML" in str(err.value)


def test_startup_wins_over_run() -> None:
    lc = parse_recipe(simple_recipe("a", {"Startup": "s", "Run": "r"})).select(AMD64).lifecycle
    assert lc.step("Startup") == Step("s")
    assert lc.step("Run") is None


def test_recipe_dir_loads_all_formats_and_rejects_duplicates(
    write_recipe: RecipeWriter, recipe_dir: Path
) -> None:
    write_recipe(simple_recipe("a", {"Run": "x"}), fmt="yaml")
    write_recipe(simple_recipe("b", {"Run": "x"}), fmt="yml")
    write_recipe(simple_recipe("c", {"Run": "x"}), fmt="json")
    (recipe_dir / "README.md").write_text("not a recipe")
    assert [r.name for r in load_recipe_dir(recipe_dir)] == ["a", "b", "c"]
    write_recipe(simple_recipe("a", {"Run": "y"}), fmt="json", name="copy-of-a")
    with pytest.raises(RecipeError) as err:
        load_recipe_dir(recipe_dir)
    assert "a@1.0.0 is also defined in" in str(err.value)
