"""Component versions (plain ``MAJOR.MINOR.PATCH``) and npm-style version requirements.

Greengrass writes dependency requirements the npm way: ``>=2.1.0 <2.2.0`` (space = and),
``^1.2.0``, ``~1.2.0``, ``1.2.0``/``=1.2.0``, ``*`` and alternatives joined by ``||``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from ggvision.errors import RecipeError

_VERSION = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
_COMPARATOR = re.compile(r"^(>=|<=|>|<|=|\^|~)?\s*v?(\S+)$")
_PARTIAL = re.compile(r"^(\d+|[xX*])(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?$")

Version = tuple[int, int, int]
_OPS: Final = (">=", "<=", ">", "<", "=")


def parse_version(text: str) -> Version:
    """``"2.1.0"`` -> ``(2, 1, 0)``; anything else (pre-release tags included) is a RecipeError."""
    m = _VERSION.match(text.strip())
    if m is None:
        raise RecipeError(f"version {text!r} is not MAJOR.MINOR.PATCH")
    return int(m[1]), int(m[2]), int(m[3])


@dataclass(frozen=True, slots=True)
class _Cmp:
    op: str
    version: Version

    def ok(self, v: Version) -> bool:
        match self.op:
            case ">=":
                return v >= self.version
            case "<=":
                return v <= self.version
            case ">":
                return v > self.version
            case "<":
                return v < self.version
            case _:
                return v == self.version


def _partial(text: str, requirement: str) -> tuple[int | None, int | None, int | None]:
    m = _PARTIAL.match(text)
    if m is None:
        raise RecipeError(f"version requirement {requirement!r}: bad version {text!r}")
    parts = [None if p is None or p in "xX*" else int(p) for p in m.groups()]
    return parts[0], parts[1], parts[2]


def _expand(token: str, requirement: str) -> list[_Cmp]:
    m = _COMPARATOR.match(token)
    if m is None:
        raise RecipeError(f"version requirement {requirement!r}: cannot read {token!r}")
    op, rest = m[1] or "", m[2]
    major, minor, patch = _partial(rest, requirement)
    if major is None:
        return []  # "*": anything
    lo: Version = (major, minor or 0, patch or 0)
    if op in ("", "=") and (minor is None or patch is None):
        # "1" == ">=1.0.0 <2.0.0"; "1.2" == ">=1.2.0 <1.3.0"
        hi = (major + 1, 0, 0) if minor is None else (major, minor + 1, 0)
        return [_Cmp(">=", lo), _Cmp("<", hi)]
    if op == "^":
        if major > 0 or minor is None:
            hi = (major + 1, 0, 0)
        elif minor > 0 or patch is None:
            hi = (0, minor + 1, 0)
        else:
            hi = (0, 0, (patch or 0) + 1)
        return [_Cmp(">=", lo), _Cmp("<", hi)]
    if op == "~":
        hi = (major + 1, 0, 0) if minor is None else (major, minor + 1, 0)
        return [_Cmp(">=", lo), _Cmp("<", hi)]
    if op in _OPS or not op:
        if op in (">", "<=") and (minor is None or patch is None):
            # ">1.2" means ">=1.3.0"; "<=1.2" means "<1.3.0"
            bump = (major + 1, 0, 0) if minor is None else (major, minor + 1, 0)
            return [_Cmp(">=" if op == ">" else "<", bump)]
        return [_Cmp(op or "=", lo)]
    raise RecipeError(f"version requirement {requirement!r}: cannot read {token!r}")


def _tokens(alternative: str) -> list[str]:
    # Allow ">= 1.0.0" (operator separated from its version by a space).
    raw = alternative.split()
    out: list[str] = []
    for tok in raw:
        if out and out[-1] in (*_OPS, "^", "~"):
            out[-1] += tok
        else:
            out.append(tok)
    return out


def satisfies(version: str, requirement: str) -> bool:
    """True when ``version`` meets the npm-style ``requirement`` (empty means any)."""
    v = parse_version(version)
    requirement = requirement.strip()
    if not requirement:
        return True
    for alternative in requirement.split("||"):
        comparators = [c for tok in _tokens(alternative) for c in _expand(tok, requirement)]
        if all(c.ok(v) for c in comparators):
            return True
    return False


def check_requirement(requirement: str) -> None:
    """Raise RecipeError if ``requirement`` cannot be parsed."""
    for alternative in requirement.strip().split("||"):
        for tok in _tokens(alternative):
            _expand(tok, requirement)
