"""Docs that match the code: generated pages are up to date."""

from __future__ import annotations

from tools import config_docs


def test_configuration_page_is_generated_from_the_models() -> None:
    assert config_docs.OUT.read_text() == config_docs.render(), (
        "docs/configuration.md is stale: run python tools/config_docs.py"
    )


def test_every_recipe_default_key_is_documented() -> None:
    import yaml

    text = config_docs.OUT.read_text()
    for name, _ in config_docs._components():
        recipe = yaml.safe_load(
            (config_docs.REPO / "components" / name / "recipe.yaml").read_text()
        )
        for key in recipe["ComponentConfiguration"]["DefaultConfiguration"]:
            if key != "accessControl":
                assert f"| `{key}` |" in text, f"{name}: {key} is not documented"
