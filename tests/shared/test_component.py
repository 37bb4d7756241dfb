"""run_component, the main() of every component: exit 0 after SIGTERM with the service stopped
and the bus closed, exit 2 with "cannot start" when the bus, the factory or the start fails, a
run that ends by itself gives its own status, and a person's run prints its start error."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ggvision.testing.harness import CoreThread

REPO = Path(__file__).resolve().parents[2]
IPC_VARS = ("AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT", "SVCUID")


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in IPC_VARS and k != "GGV_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return {**env, **(extra or {})}


def _start(mode: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.shared.component_child", mode, *args],
        cwd=REPO,
        env=env or _env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str], timeout: float = 20) -> tuple[int, list[str], str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"still running after {timeout} s: {out}{err}") from None
    return proc.returncode, out.splitlines(), err


def _logs(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines if line.startswith("{")]


def _events(lines: list[str]) -> list[str]:
    return [r["event"] for r in _logs(lines)]


def _stop_when_started(proc: subprocess.Popen[str]) -> list[str]:
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line.rstrip("\n"))
        if line.strip() == "started":
            break
    proc.send_signal(signal.SIGTERM)
    return seen


def test_sigterm_stops_the_service_closes_the_bus_and_exits_0() -> None:
    proc = _start("serve")
    before = _stop_when_started(proc)
    rc, after, _ = _finish(proc)
    assert rc == 0
    assert "log level None" in before  # no --log-level, no $GGV_LOG_LEVEL: INFO
    assert after[-2:] == ["stopped", "bus closed"]  # the service first, then the bus
    assert _events(after) == ["demo.stopping"]
    assert _logs(after)[0]["message"] == "stopping"
    assert _logs(after)[0]["logger"] == "ggvision_demo"


def test_sigterm_on_the_real_ipc_bus() -> None:
    with CoreThread() as core:
        proc = _start("ipc", env=_env(core.component_env("com.test.Demo")))
        _stop_when_started(proc)
        rc, after, _ = _finish(proc)
    assert rc == 0
    assert after[-1] == "stopped"
    assert "demo.stopping" in _events(after)


def test_no_greengrass_environment_is_cannot_start() -> None:
    rc, lines, _ = _finish(_start("ipc"))
    assert rc == 2
    [failed] = _logs(lines)
    assert failed["event"] == "demo.start_failed"
    assert failed["message"].startswith("cannot start: not running as a Greengrass component")
    assert "started" not in lines


def test_a_factory_error_is_cannot_start_and_closes_the_bus() -> None:
    rc, lines, _ = _finish(_start("factory-fails", "--log-level", "debug"))
    assert rc == 2
    assert "log level debug" in lines  # lower case is accepted
    assert "bus closed" in lines and "started" not in lines
    assert [(r["event"], r["message"]) for r in _logs(lines)] == [
        ("demo.start_failed", "cannot start: threshold: must be at most 1")
    ]


def test_a_start_error_stops_what_started_then_is_cannot_start() -> None:
    rc, lines, _ = _finish(_start("start-fails"))  # its worker thread is not a daemon
    assert rc == 2
    assert [x for x in lines if not x.startswith("{")][-2:] == ["stopped", "bus closed"]
    assert [(r["event"], r["message"]) for r in _logs(lines)] == [
        ("demo.start_failed", "cannot start: the camera is not there")
    ]


def test_a_run_that_ends_by_itself_gives_its_exit_status_without_a_signal() -> None:
    rc, lines, _ = _finish(_start("finite"))
    assert rc == 1
    assert lines[-3:] == ["started", "stopped", "bus closed"]
    assert "demo.stopping" not in _events(lines)


def test_a_persons_run_prints_its_start_error_instead_of_logging_it() -> None:
    rc, lines, err = _finish(_start("human-fails", "--once", "--log-level", "INFO"))
    assert rc == 2
    assert "ggvision-demo: threshold: must be at most 1" in err.splitlines()
    assert not _logs(lines) and not _logs(err.splitlines())


@pytest.mark.parametrize(
    ("level", "events"), [([], []), (["--log-level", "INFO"], ["demo.stopping"])]
)
def test_a_persons_run_logs_to_stderr_at_warning_by_default(
    level: list[str], events: list[str]
) -> None:
    proc = _start("serve", "--once", *level)
    _stop_when_started(proc)
    rc, after, err = _finish(proc)
    assert rc == 0
    assert not _logs(after)  # stdout is the person's
    assert _events(err.splitlines()) == events
