"""Real runs: real ``sh`` processes, the real IPC core, the real awsiotsdk client. No mocks."""

from __future__ import annotations

import asyncio
import signal
import textwrap
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ggvision.core.server import IpcCore
from ggvision.runner.configuration import normalise_update
from ggvision.runner.layout import Layout
from ggvision.runner.recipe import Recipe, parse_recipe
from ggvision.runner.resolve import resolve
from ggvision.runner.runner import ComponentSummary, Runner, RunnerOptions

from .conftest import simple_recipe

PUBLISHER = textwrap.dedent(
    """\
    import json, os, sys, threading
    from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
    from awsiot.greengrasscoreipc.model import BinaryMessage, PublishMessage

    topic, text = sys.argv[1], sys.argv[2]
    got = threading.Event()
    client = GreengrassCoreIPCClientV2()

    def on_event(event):
        print("received", event.binary_message.message.decode(), flush=True)
        got.set()

    client.subscribe_to_topic(topic=topic, on_stream_event=on_event)
    body = json.dumps({"text": text, "thing": os.environ["AWS_IOT_THING_NAME"],
                       "version": os.environ["GREENGRASS_COMPONENT_VERSION"]})
    for _ in range(50):
        client.publish_to_topic(
            topic=topic,
            publish_message=PublishMessage(binary_message=BinaryMessage(message=body.encode())),
        )
        if got.wait(0.1):
            break
    client.close()
    sys.exit(0 if got.is_set() else 3)
    """
)

REPORTS_ERROR_ONCE = textwrap.dedent(
    """\
    import os, sys, time
    from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
    from awsiot.greengrasscoreipc.model import ReportedLifecycleState

    if os.path.exists("reported"):
        sys.exit(0)
    open("reported", "w").close()
    client = GreengrassCoreIPCClientV2()
    client.update_state(state=ReportedLifecycleState.ERRORED)
    time.sleep(30)  # the runner must stop and restart us
    """
)


@dataclass
class Outcome:
    summary: dict[str, ComponentSummary]
    states: list[tuple[str, str]] = field(default_factory=list)

    def of(self, name: str) -> list[str]:
        return [s for n, s in self.states if n == name]


async def _run(
    root: Path,
    recipes: list[Recipe],
    *,
    during: Callable[[Runner, IpcCore], Awaitable[None]] | None = None,
    **options: Any,
) -> Outcome:
    layout = Layout.at(root)
    core = IpcCore(layout.ipc_socket)
    states: list[tuple[str, str]] = []
    core.add_state_listener(lambda name, state: states.append((name, state)))
    runner = Runner(
        core,
        resolve(recipes),
        RunnerOptions(
            layout=layout, **{"restart_backoff_s": 0.05, "stop_timeout_s": 2.0, **options}
        ),
    )
    await core.start()
    try:
        await runner.start()
        if during is not None:
            await asyncio.wait_for(during(runner, core), 8)
        else:
            await asyncio.wait_for(runner.wait_settled(), 8)
    finally:
        await runner.stop()
        await core.stop()
    return Outcome({s.name: s for s in runner.summary()}, states)


def run(root: Path, recipes: list[Recipe], **kw: Any) -> Outcome:
    return asyncio.run(_run(root, recipes, **kw))


def recipe(name: str, lifecycle: dict[str, Any], **kw: Any) -> Recipe:
    return parse_recipe(simple_recipe(name, lifecycle, **kw), f"{name}.yaml")


def pubsub_acl(name: str, topic: str) -> dict[str, Any]:
    return {
        "aws.greengrass.ipc.pubsub": {
            f"{name}:pubsub:1": {
                "operations": ["aws.greengrass#PublishToTopic", "aws.greengrass#SubscribeToTopic"],
                "resources": [topic],
            }
        }
    }


def test_run_publishes_with_the_real_client(short_root: Path, tmp_path: Path, python: str) -> None:
    name = "com.example.Publisher"
    artifact_dir = tmp_path / "artifacts"
    (artifact_dir / name / "1.2.3").mkdir(parents=True)
    (artifact_dir / name / "1.2.3" / "pub.py").write_text(PUBLISHER)
    r = recipe(
        name,
        {
            "Run": "{configuration:/python} -u {artifacts:path}/pub.py {configuration:/topic} "
            "'{configuration:/text}'"
        },
        version="1.2.3",
        config={
            "python": python,
            "topic": "local/test",
            "text": "default",
            "accessControl": pubsub_acl(name, "local/test"),
        },
        artifacts=[{"URI": "s3://bucket/pub.py"}],
    )
    update = normalise_update({name: {"MERGE": {"text": "hello from MERGE"}}})
    out = run(short_root, [r], artifact_dir=artifact_dir, update=update, thing_name="cam-1")
    assert out.summary[name].state == "FINISHED"
    assert out.of(name) == ["NEW", "INSTALLED", "STARTING", "RUNNING", "FINISHED"]
    log = (short_root / "logs" / f"{name}.log").read_text()
    assert 'received {"text": "hello from MERGE", "thing": "cam-1", "version": "1.2.3"}' in log
    assert not (short_root / "ipc.socket").exists()


def test_failures_restart_then_broken_after_three(short_root: Path) -> None:
    r = recipe(
        "com.example.Failing",
        {
            "Run": "echo attempt >> attempts; echo oops >&2; exit 3",
            "Recover": "echo recovered >> recoveries",
        },
    )
    out = run(short_root, [r])
    summary = out.summary["com.example.Failing"]
    assert (summary.state, summary.errors, summary.starts, summary.last_exit) == (
        "BROKEN",
        3,
        3,
        3,
    )
    assert out.of("com.example.Failing")[-2:] == ["ERRORED", "BROKEN"]
    assert out.of("com.example.Failing").count("ERRORED") == 3
    work = short_root / "work" / "com.example.Failing"
    assert (work / "attempts").read_text().splitlines() == ["attempt"] * 3
    assert (work / "recoveries").read_text().splitlines() == ["recovered"] * 2
    assert (
        "[WARN] (Run) com.example.Failing: stderr. oops"
        in (short_root / "logs" / "com.example.Failing.log").read_text()
    )


def test_install_runs_once_until_its_script_changes(short_root: Path) -> None:
    def make(script: str) -> Recipe:
        return recipe("com.example.Inst", {"Install": script, "Run": "true"})

    counter = short_root / "installs"
    script = f"echo x >> {counter}"
    run(short_root, [make(script)])
    run(short_root, [make(script)])
    assert counter.read_text().splitlines() == ["x"]
    run(short_root, [make(script + " # changed")])
    assert counter.read_text().splitlines() == ["x", "x"]
    run(short_root, [make("exit 9")], skip_install=True)
    out = run(short_root, [make(f"echo y >> {counter}; exit 4")])
    assert out.summary["com.example.Inst"].state == "BROKEN"
    assert counter.read_text().splitlines() == ["x", "x", "y", "y", "y"]


def test_hard_dependency_is_running_before_its_dependent_starts(short_root: Path) -> None:
    store = recipe(
        "com.example.Store",
        {"Startup": "sleep 0.3; echo ready > ready"},
        config={"modelName": "resnet"},
    )
    user = recipe(
        "com.example.User",
        {
            "Run": "test -f {com.example.Store:work:path}/ready && "
            "echo {com.example.Store:configuration:/modelName} > seen"
        },
        deps={"com.example.Store": {"VersionRequirement": "^1.0.0"}},
    )

    async def until_user_done(runner: Runner, core: IpcCore) -> None:
        while core.state_of("com.example.User") != "FINISHED":
            await asyncio.sleep(0.02)

    out = run(short_root, [user, store], during=until_user_done)
    order = [(n, s) for n, s in out.states if s in ("STARTING", "RUNNING")]
    assert order[:3] == [
        ("com.example.Store", "STARTING"),
        ("com.example.Store", "RUNNING"),
        ("com.example.User", "STARTING"),
    ]
    assert (short_root / "work" / "com.example.User" / "seen").read_text() == "resnet\n"


def test_component_reported_error_is_restarted(short_root: Path, python: str) -> None:
    script = short_root / "reporter.py"
    script.write_text(REPORTS_ERROR_ONCE)
    r = recipe("com.example.Reporter", {"Run": f"{python} -u {script}"})
    out = run(short_root, [r])
    summary = out.summary["com.example.Reporter"]
    assert (summary.state, summary.errors, summary.starts) == ("FINISHED", 1, 2)
    assert "ERRORED" in out.of("com.example.Reporter")


def test_stop_runs_shutdown_and_kills_the_process_group(short_root: Path) -> None:
    r = recipe(
        "com.example.Server",
        {
            # Startup leaves a background process behind, which must die with the group
            "Startup": "sleep 60 & echo $! > bg.pid",
            "Shutdown": "echo bye > shutdown-ran",
        },
    )
    bg_pid: list[int] = []

    async def until_running(runner: Runner, core: IpcCore) -> None:
        while core.state_of("com.example.Server") != "RUNNING":
            await asyncio.sleep(0.02)
        bg_pid.append(int((short_root / "work/com.example.Server/bg.pid").read_text()))
        assert running(bg_pid[0])

    started = time.monotonic()
    out = run(short_root, [r], during=until_running)
    assert time.monotonic() - started < 5
    assert out.of("com.example.Server")[-2:] == ["STOPPING", "FINISHED"]
    assert (short_root / "work/com.example.Server/shutdown-ran").read_text() == "bye\n"
    assert not running(bg_pid[0])


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie waits for PID 1, which may reap late)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def test_sigterm_ignoring_process_is_killed(short_root: Path) -> None:
    r = recipe("com.example.Stubborn", {"Run": "trap '' TERM; while :; do sleep 0.05; done"})

    async def until_running(runner: Runner, core: IpcCore) -> None:
        while core.state_of("com.example.Stubborn") != "RUNNING":
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)

    started = time.monotonic()
    out = run(short_root, [r], during=until_running, stop_timeout_s=0.5)
    assert time.monotonic() - started < 5
    assert out.summary["com.example.Stubborn"].state == "FINISHED"


def test_unresolvable_variable_breaks_only_that_component(short_root: Path) -> None:
    bad = recipe("com.example.Typo", {"Run": "echo {configuration:/modleDir}"})
    good = recipe("com.example.Fine", {"Run": "true"})
    out = run(short_root, [bad, good])
    assert out.summary["com.example.Typo"].state == "BROKEN"
    assert out.summary["com.example.Fine"].state == "FINISHED"


def test_dependent_of_a_broken_component_never_starts(short_root: Path) -> None:
    # a Startup that fails never reaches RUNNING (a failing Run would be RUNNING for a moment)
    broken = recipe("com.example.Base", {"Startup": "exit 1"})
    dependent = recipe(
        "com.example.OnTop",
        {"Run": "touch started"},
        deps={"com.example.Base": {"DependencyType": "HARD"}},
    )
    out = run(short_root, [broken, dependent])
    assert out.summary["com.example.Base"].state == "BROKEN"
    assert out.summary["com.example.OnTop"].state == "INSTALLED"
    assert not (short_root / "work/com.example.OnTop/started").exists()


def test_signal_numbers_are_posix() -> None:
    # the CLI's exit codes (128 + n) rely on these
    assert (signal.SIGTERM, signal.SIGKILL) == (15, 9)


def test_setenv_skipif_and_nucleus_environment(short_root: Path) -> None:
    r = recipe(
        "com.example.Env",
        {
            "Setenv": {"MODEL": "{configuration:/model}", "LEVEL": "lifecycle"},
            "Install": {"Script": "touch install-ran", "SkipIf": "exists skip-install"},
            "Run": {
                "Script": 'env | grep -E "^(MODEL|LEVEL|ROOT|SVCUID|AWS_|GGC_|GREENGRASS_)" | sort '
                "> env.txt; pwd > pwd.txt",
                "Setenv": {"LEVEL": "step", "ROOT": "{kernel:rootPath}"},
            },
        },
        config={"model": "mobilenet"},
    )
    work = short_root / "work" / "com.example.Env"
    work.mkdir(parents=True)
    (work / "skip-install").touch()
    out = run(short_root, [r], thing_name="thing-9", region="eu-west-1")
    assert out.summary["com.example.Env"].state == "FINISHED"
    assert not (work / "install-ran").exists()
    env = dict(line.split("=", 1) for line in (work / "env.txt").read_text().splitlines())
    assert env["MODEL"] == "mobilenet"
    assert env["LEVEL"] == "step"
    assert env["ROOT"] == str(short_root)
    assert env["AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"] == str(
        short_root / "ipc.socket"
    )
    assert env["AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH"] == str(short_root / "ipc.socket")
    assert env["SVCUID"] and env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] == env["SVCUID"]
    assert (env["AWS_IOT_THING_NAME"], env["AWS_REGION"], env["AWS_DEFAULT_REGION"]) == (
        "thing-9",
        "eu-west-1",
        "eu-west-1",
    )
    assert env["GREENGRASS_COMPONENT_VERSION"] == "1.0.0"
    assert env["GGC_VERSION"]
    assert (work / "pwd.txt").read_text().strip() == str(work)


def test_blocked_chain_still_settles(short_root: Path) -> None:
    base = recipe("com.example.A", {"Startup": "exit 1"})
    middle = recipe("com.example.B", {"Run": "sleep 60"}, deps={"com.example.A": {}})
    top = recipe("com.example.C", {"Run": "sleep 60"}, deps={"com.example.B": {}})
    out = run(short_root, [base, middle, top])  # wait_settled must return
    states = {n: s.state for n, s in out.summary.items()}
    assert states == {
        "com.example.A": "BROKEN",
        "com.example.B": "INSTALLED",
        "com.example.C": "INSTALLED",
    }
