"""The core's event loop: uvloop's when installed, asyncio's otherwise or when asked."""

from __future__ import annotations

import asyncio
import sys

import pytest

from ggvision.core import eventloop
from ggvision.errors import ConfigError


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_uvloop_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("uvloop")
    monkeypatch.delenv(eventloop.ENV, raising=False)
    assert eventloop.loop_name() == eventloop.UVLOOP
    assert eventloop.run(_loop_module()).startswith("uvloop")


def test_asyncio_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(eventloop.ENV, raising=False)
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    assert eventloop.loop_name() == eventloop.ASYNCIO
    assert eventloop.run(_loop_module()).startswith("asyncio")
    with pytest.raises(ConfigError) as info:
        eventloop.new_event_loop(eventloop.UVLOOP)
    assert "ggvision[core]" in str(info.value)


@pytest.mark.parametrize("how", ["env", "argument"])
def test_asyncio_when_asked(monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    monkeypatch.delenv(eventloop.ENV, raising=False)
    if how == "env":
        monkeypatch.setenv(eventloop.ENV, "asyncio")
        choice = None
    else:
        choice = "asyncio"
    assert eventloop.loop_name(choice) == eventloop.ASYNCIO
    assert eventloop.run(_loop_module(), choice).startswith("asyncio")


def test_an_unknown_loop_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(eventloop.ENV, "trio")
    with pytest.raises(ConfigError) as info:
        eventloop.loop_name()
    assert "GGV_CORE_LOOP must be asyncio or uvloop, not 'trio'" in str(info.value)
