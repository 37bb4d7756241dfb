"""``ggvision core run|exec|deploy|status`` as users run them: real processes end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from ggvision.errors import AdminError
from ggvision.runner.admin_client import AdminClient

from .conftest import RecipeWriter, simple_recipe
from .test_runner import PUBLISHER, pubsub_acl

DAEMON = textwrap.dedent(
    """\
    import signal, sys, time

    def on_term(signum, frame):
        with open("got-sigterm", "w") as f:
            f.write("yes")
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)
    print("daemon up", flush=True)
    while True:
        time.sleep(0.05)
    """
)


def ggvision(*args: str, timeout: float = 15, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ggvision.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kw,  # type: ignore[arg-type]
    )


def wait_for(predicate: object, timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@dataclass
class Core:
    proc: subprocess.Popen[str]
    root: Path
    admin: AdminClient

    def states(self) -> dict[str, str]:
        try:
            return self.admin.states()
        except AdminError:
            return {}


@pytest.fixture
def running_core(
    short_root: Path, write_recipe: RecipeWriter, recipe_dir: Path, python: str
) -> Iterator[Core]:
    """``ggvision core run`` with one long-running component, com.example.Daemon."""
    script = recipe_dir.parent / "daemon.py"
    script.write_text(DAEMON)
    write_recipe(
        simple_recipe(
            "com.example.Daemon",
            {"Run": f"{python} -u {script}", "Shutdown": "echo bye > shutdown-ran"},
            config={"greeting": "hello"},
        )
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ggvision.cli",
            "core",
            "run",
            "--root",
            str(short_root),
            "--recipe-dir",
            str(recipe_dir),
            "--stop-timeout",
            "3",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    running = Core(proc, short_root, AdminClient(short_root / "admin.socket", timeout_s=5))
    try:
        wait_for(lambda: running.states().get("com.example.Daemon") == "RUNNING")
        log = short_root / "logs" / "com.example.Daemon.log"
        wait_for(lambda: "daemon up" in log.read_text())  # its SIGTERM handler is in place
        yield running
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


def test_sigterm_stops_cleanly(running_core: Core) -> None:
    running_core.proc.send_signal(signal.SIGTERM)
    out, err = running_core.proc.communicate(timeout=10)
    assert running_core.proc.returncode == 0, err
    assert "stopped (signal)" in out
    assert "com.example.Daemon" in out and "FINISHED" in out
    work = running_core.root / "work" / "com.example.Daemon"
    assert (work / "shutdown-ran").read_text() == "bye\n"
    assert (work / "got-sigterm").read_text() == "yes"
    assert not (running_core.root / "ipc.socket").exists()
    assert not (running_core.root / "admin.socket").exists()
    log = (running_core.root / "logs" / "com.example.Daemon.log").read_text()
    assert "stdout. daemon up" in log
    events = [json.loads(line)["event"] for line in err.splitlines() if line.startswith("{")]
    assert "core.start" in events and "core.stopping" in events
    assert (running_core.root / "logs" / "greengrass.log").read_text().count("core.stop") >= 1


def test_exec_runs_a_command_as_a_component(
    running_core: Core, tmp_path: Path, python: str
) -> None:
    pub = tmp_path / "pub.py"
    pub.write_text(PUBLISHER)
    allowed = ggvision(
        "core",
        "exec",
        "--root",
        str(running_core.root),
        "--component",
        "com.example.Exec",
        "--allow",
        "pubsub:publish:local/exec",
        "--allow",
        "pubsub:subscribe:local/exec",
        "--thing-name",
        "exec-thing",
        "--",
        python,
        str(pub),
        "local/exec",
        "from exec",
    )
    assert allowed.returncode == 0, allowed.stderr
    assert '"text": "from exec", "thing": "exec-thing", "version": "0.0.0"' in allowed.stdout
    assert "com.example.Exec" not in running_core.states()  # unregistered at exit

    denied = ggvision(
        "core",
        "exec",
        "--root",
        str(running_core.root),
        "--component",
        "com.example.Exec",
        "--allow",
        "pubsub:subscribe:local/exec",
        "--",
        python,
        str(pub),
        "local/exec",
        "x",
    )
    assert denied.returncode == 1
    assert "UnauthorizedError" in denied.stderr

    code = ggvision(
        "core",
        "exec",
        "--root",
        str(running_core.root),
        "--component",
        "com.example.Exit",
        "--",
        "sh",
        "-c",
        'test -n "$SVCUID" && exit 7',
    )
    assert code.returncode == 7


def test_exec_takes_access_control_from_a_recipe(
    running_core: Core, tmp_path: Path, python: str
) -> None:
    pub = tmp_path / "pub.py"
    pub.write_text(PUBLISHER)
    recipe = tmp_path / "requester.yaml"
    recipe.write_text(
        yaml.safe_dump(
            simple_recipe(
                "com.custom.requester",
                {"Run": "unused"},
                version="1.4.0",
                config={"accessControl": pubsub_acl("com.custom.requester", "local/inference")},
            )
        )
    )
    result = ggvision(
        "core",
        "exec",
        "--root",
        str(running_core.root),
        "--recipe",
        str(recipe),
        "--",
        python,
        str(pub),
        "local/inference",
        "req",
    )
    assert result.returncode == 0, result.stderr
    assert '"version": "1.4.0"' in result.stdout


def test_exec_forwards_signals(running_core: Core) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ggvision.cli",
            "core",
            "exec",
            "--root",
            str(running_core.root),
            "--component",
            "com.example.Sleeper",
            "--",
            "sh",
            "-c",
            "trap 'exit 42' TERM; while :; do sleep 0.05; done",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: running_core.states().get("com.example.Sleeper") == "RUNNING")
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=10)
    assert proc.returncode == 42
    assert "com.example.Sleeper" not in running_core.states()


def test_deploy_and_status(running_core: Core) -> None:
    status = ggvision("core", "status", "--root", str(running_core.root), "--json")
    assert status.returncode == 0
    assert json.loads(status.stdout) == {"com.example.Daemon": "RUNNING"}

    ok = ggvision(
        "core",
        "deploy",
        "--root",
        str(running_core.root),
        "--update-config",
        '{"com.example.Daemon": {"MERGE": {"greeting": "hi"}}}',
    )
    assert ok.returncode == 0, ok.stderr
    assert "SUCCEEDED" in ok.stdout

    failed = ggvision(
        "core",
        "deploy",
        "--root",
        str(running_core.root),
        "--json",
        "--update-config",
        '{"com.example.Nope": {"MERGE": {}}}',
    )
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["status"] == "FAILED"


def test_deploy_takes_a_component_update_policy(running_core: Core) -> None:
    """``--component-update-action/--component-update-timeout``: CreateDeployment's
    componentUpdatePolicy (tests/core/test_component_updates.py covers what it does)."""
    update = '{"com.example.Daemon": {"MERGE": {"greeting": "policy"}}}'
    root = str(running_core.root)
    for flags in (
        ["--component-update-action", "SKIP_NOTIFY_COMPONENTS"],
        ["--component-update-action", "NOTIFY_COMPONENTS", "--component-update-timeout", "1"],
    ):
        ok = ggvision("core", "deploy", "--root", root, "--update-config", update, *flags)
        assert ok.returncode == 0, ok.stderr
        assert "SUCCEEDED" in ok.stdout
    bad = ggvision(
        "core",
        "deploy",
        "--root",
        root,
        "--update-config",
        update,
        "--component-update-timeout",
        "-1",
    )
    assert bad.returncode != 0
    assert "componentUpdatePolicy timeoutInSeconds must be a number >= 0" in bad.stderr


def test_a_second_core_on_the_same_root_is_refused(running_core: Core, recipe_dir: Path) -> None:
    second = ggvision(
        "core", "run", "--root", str(running_core.root), "--recipe-dir", str(recipe_dir)
    )
    assert second.returncode == 2
    assert "a core is already running" in second.stderr
    assert running_core.states().get("com.example.Daemon") == "RUNNING"


def test_run_until_done_reports_broken_components(
    short_root: Path, write_recipe: RecipeWriter, recipe_dir: Path
) -> None:
    write_recipe(simple_recipe("com.example.Ok", {"Run": "true"}))
    write_recipe(simple_recipe("com.example.Bad", {"Run": "exit 5"}))
    result = ggvision(
        "core",
        "run",
        "--root",
        str(short_root),
        "--recipe-dir",
        str(recipe_dir),
        "--until-done",
        "--json",
        "--restart-backoff",
        "0.05",
        "--max-runtime",
        "8",
    )
    assert result.returncode == 1, result.stderr
    summary = json.loads(result.stdout)
    assert summary["reason"] == "done"
    states = {c["name"]: (c["state"], c["errors"], c["last_exit"]) for c in summary["components"]}
    assert states == {"com.example.Ok": ("FINISHED", 0, 0), "com.example.Bad": ("BROKEN", 3, 5)}


def test_run_max_runtime(short_root: Path, write_recipe: RecipeWriter, recipe_dir: Path) -> None:
    write_recipe(simple_recipe("com.example.Forever", {"Run": "exec sleep 60"}))
    started = time.monotonic()
    result = ggvision(
        "core",
        "run",
        "--root",
        str(short_root),
        "--recipe-dir",
        str(recipe_dir),
        "--max-runtime",
        "0.5",
        "--json",
    )
    assert time.monotonic() - started < 8
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["reason"] == "max-runtime"


def test_recipe_errors_exit_2_with_the_reason(
    short_root: Path, write_recipe: RecipeWriter, recipe_dir: Path
) -> None:
    write_recipe(
        simple_recipe(
            "com.custom.ImageClassifier",
            {"Run": "true"},
            deps={
                "variant.DLR.ImageClassification.ModelStore": {
                    "VersionRequirement": ">=2.1.0 <2.2.0"
                }
            },
        )
    )
    result = ggvision("core", "run", "--root", str(short_root), "--recipe-dir", str(recipe_dir))
    assert result.returncode == 2
    assert "depends on variant.DLR.ImageClassification.ModelStore" in result.stderr


def test_no_core_running(short_root: Path) -> None:
    result = ggvision("core", "status", "--root", str(short_root))
    assert result.returncode == 1
    assert "no core is running" in result.stderr


def test_exec_needs_a_command(short_root: Path) -> None:
    result = ggvision("core", "exec", "--root", str(short_root), "--component", "x")
    assert result.returncode == 2
    assert "needs a command" in result.stderr


@pytest.mark.skipif(not os.path.exists("/proc"), reason="linux only")
def test_help_lists_core_commands() -> None:
    result = ggvision("core", "--help")
    assert result.returncode == 0
    for command in ("run", "exec", "deploy", "status"):
        assert command in result.stdout


IOT_PUBLISHER = textwrap.dedent(
    """\
    import os
    from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
    from awsiot.greengrasscoreipc.model import QOS

    client = GreengrassCoreIPCClientV2()
    thing = os.environ["AWS_IOT_THING_NAME"]
    client.publish_to_iot_core(topic_name=f"ggv/{thing}/hello", qos=QOS.AT_LEAST_ONCE,
                               payload=b"from the runner")
    client.close()
    """
)


def test_mqtt_broker_bridges_iot_core(
    short_root: Path, write_recipe: RecipeWriter, recipe_dir: Path, python: str, mosquitto: Any
) -> None:
    import paho.mqtt.client as mqtt

    received: list[tuple[str, bytes]] = []
    subscribed = threading.Event()
    cloud = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    cloud.on_message = lambda _c, _u, msg: received.append((msg.topic, msg.payload))
    cloud.on_subscribe = lambda *_a: subscribed.set()
    host, port = mosquitto.address.split(":")
    cloud.connect(host, int(port))
    cloud.loop_start()
    try:
        cloud.subscribe("ggv/#", qos=1)
        assert subscribed.wait(5)
        script = recipe_dir.parent / "iot.py"
        script.write_text(IOT_PUBLISHER)
        name = "com.example.Uplink"
        acl = {
            "aws.greengrass.ipc.mqttproxy": {
                f"{name}:mqttproxy:1": {
                    "operations": ["aws.greengrass#PublishToIoTCore"],
                    "resources": ["ggv/+/hello"],
                }
            }
        }
        write_recipe(
            simple_recipe(name, {"Run": f"{python} -u {script}"}, config={"accessControl": acl})
        )
        result = ggvision(
            "core",
            "run",
            "--root",
            str(short_root),
            "--recipe-dir",
            str(recipe_dir),
            "--mqtt-broker",
            mosquitto.address,
            "--thing-name",
            "cam-7",
            "--until-done",
            "--json",
            "--max-runtime",
            "8",
        )
        assert result.returncode == 0, result.stderr
        wait_for(lambda: bool(received), timeout=5)
    finally:
        cloud.loop_stop()
        cloud.disconnect()
    assert received == [("ggv/cam-7/hello", b"from the runner")]


def test_run_reads_recipes_from_the_current_folder_by_default(
    short_root: Path, write_recipe: RecipeWriter, recipe_dir: Path
) -> None:
    write_recipe(
        simple_recipe(
            "com.example.Lonely",
            {"Run": "true"},
            deps={"com.example.Absent": {"VersionRequirement": ">=1.0.0"}},
        )
    )
    # From the project root (recipe_dir is <cwd>/recipes): the recipes there are the plan.
    result = ggvision("core", "run", "--root", str(short_root), cwd=recipe_dir.parent)
    assert result.returncode == 2
    assert "depends on com.example.Absent" in result.stderr


def test_run_without_recipes_says_what_to_do(short_root: Path, tmp_path: Path) -> None:
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    result = ggvision("core", "run", "--root", str(short_root), cwd=empty)
    assert result.returncode == 2
    assert "no --recipe-dir given and no recipes/ folder here" in result.stderr
