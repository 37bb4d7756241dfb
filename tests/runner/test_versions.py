from __future__ import annotations

import pytest

from ggvision.errors import RecipeError
from ggvision.runner.versions import check_requirement, parse_version, satisfies


@pytest.mark.parametrize(
    ("version", "requirement", "ok"),
    [
        ("2.1.0", ">=2.1.0 <2.2.0", True),
        ("2.1.9", ">=2.1.0 <2.2.0", True),
        ("2.2.0", ">=2.1.0 <2.2.0", False),
        ("2.0.9", ">= 2.1.0 < 2.2.0", False),
        ("1.4.2", "^1.2.0", True),
        ("2.0.0", "^1.2.0", False),
        ("0.2.5", "^0.2.1", True),
        ("0.3.0", "^0.2.1", False),
        ("1.2.9", "~1.2.0", True),
        ("1.3.0", "~1.2.0", False),
        ("1.0.0", "1.0.0", True),
        ("1.0.1", "=1.0.0", False),
        ("1.9.9", "1", True),
        ("1.2.3", "1.2", True),
        ("1.3.0", "1.2.x", False),
        ("7.7.7", "*", True),
        ("7.7.7", "", True),
        ("3.0.0", "<2.0.0 || >=3.0.0", True),
        ("2.5.0", "<2.0.0 || >=3.0.0", False),
    ],
)
def test_satisfies(version: str, requirement: str, ok: bool) -> None:
    assert satisfies(version, requirement) is ok


@pytest.mark.parametrize("bad", ["1.0", "1.0.0-beta", "01.0.0", "v1.0.0", ""])
def test_versions_are_plain_major_minor_patch(bad: str) -> None:
    with pytest.raises(RecipeError):
        parse_version(bad)


def test_unreadable_requirement() -> None:
    with pytest.raises(RecipeError) as err:
        check_requirement(">=two")
    assert "'>=two'" in str(err.value)
