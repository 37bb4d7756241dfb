"""The Makefile as make reads it: a prerequisite list is expanded when make reads its rule, so a
variable defined further down is empty there (``setup`` once missed the CDK part that way)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ASSIGN = re.compile(r"^([A-Z_][A-Z0-9_]*)\s*(?::=|\?=|\+=|=)")
RULE = re.compile(r"^([^\t#=][^=]*?)::?(?!=)(.*)$")
REF = re.compile(r"\$\(([A-Z_][A-Z0-9_]*)\)")


def late_variables(text: str) -> list[str]:
    """Variables named in a rule's targets or prerequisites before the line that defines them."""
    defined: set[str] = set()
    late = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("\t") or line.lstrip().startswith("#"):
            continue
        if m := ASSIGN.match(line):
            defined.add(m.group(1))
        elif m := RULE.match(line):
            head = (m.group(1) + " " + m.group(2)).split("##")[0]
            late += [f"line {number}: {v}" for v in REF.findall(head) if v not in defined]
    return late


def test_every_rule_names_only_variables_defined_above_it() -> None:
    assert late_variables((REPO / "Makefile").read_text()) == []


def test_the_check_sees_a_variable_defined_below_its_rule() -> None:
    text = "A := 1\nsetup: $(A) $(B)  ## help\n\t@echo $(C)\nB := 2\n"
    assert late_variables(text) == ["line 2: B"]


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_setup_installs_the_cdk_part_too() -> None:
    db = subprocess.run(
        ["make", "-pnq", "-C", str(REPO), "setup"], capture_output=True, text=True, timeout=60
    ).stdout
    [line] = [ln for ln in db.splitlines() if ln.startswith("setup:")]
    assert ".venv/.installed-cdk" in line.split()
