"""``ggvision``: the command line.

Commands live in a table of ``name -> installer`` so later ones (``classify``, ...) add a line::

    ggvision core run    --recipe-dir DIR [--artifact-dir DIR] [--update-config JSON|FILE] ...
    ggvision core exec   --component NAME (--recipe FILE | --allow SPEC ...) -- CMD ...
    ggvision core deploy --update-config JSON|FILE
    ggvision core status [--json]
    ggvision recipe validate RECIPE ...
    ggvision publish --bucket B (--thing-group G | --thing T | --no-deploy) ...

Exit codes: 0 success; 1 a component ended BROKEN, a deployment FAILED or an admin request
failed; 2 bad input (recipes, configuration, arguments); ``core exec`` exits with CMD's code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from ggvision import __version__, logs
from ggvision.errors import AdminError, GgvisionError

log = logging.getLogger("ggvision.cli")

Handler = Callable[[argparse.Namespace], int]


# --- core run ----------------------------------------------------------------------------------
def _add_root(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--root",
        type=Path,
        default=None,
        help="core root directory (default /tmp/ggvision-<uid>; keep it short: socket paths)",
    )


def _add_identity(p: argparse.ArgumentParser) -> None:
    from ggvision.runner.environment import DEFAULT_THING_NAME

    p.add_argument("--thing-name", default=DEFAULT_THING_NAME, help="AWS_IOT_THING_NAME")
    p.add_argument("--region", default=None, help="AWS_REGION (default: environment or us-east-1)")


def _install_run(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run components from recipes against a local IPC core",
        description="Start a local IPC core and run the components of --recipe-dir (and their "
        "dependencies) through their lifecycles until interrupted.",
    )
    _add_root(p)
    p.add_argument("--recipe-dir", type=Path, required=True, help="folder of *.yaml|*.yml|*.json")
    p.add_argument(
        "--artifact-dir",
        type=Path,
        default=None,
        help="artifacts as greengrass-cli --artifactDir: DIR/<name>/<version>/<file>",
    )
    p.add_argument(
        "--update-config",
        default=None,
        metavar="JSON_OR_FILE",
        help='{"Comp": {"MERGE": {...}, "RESET": ["/ptr"]}} inline or in a file',
    )
    p.add_argument(
        "--component",
        action="extend",
        nargs="+",
        default=[],
        metavar="NAME[=VERSION]",
        help="run only these (plus dependencies); default: every recipe",
    )
    p.add_argument("--skip-install", action="store_true", help="never run Install (development)")
    _add_identity(p)
    p.add_argument("--mqtt-broker", default=None, metavar="HOST:PORT", help="IoT Core stand-in")
    p.add_argument("--max-runtime", type=float, default=None, metavar="S", help="stop after S s")
    p.add_argument(
        "--until-done",
        action="store_true",
        help="stop once every component is FINISHED or BROKEN",
    )
    p.add_argument("--echo", action="store_true", help="echo component output to stderr")
    p.add_argument(
        "--watch",
        nargs="?",
        const="local/result",
        default=None,
        metavar="TOPIC",
        help="print every result published on TOPIC (default local/result) with live rate and "
        "request-to-result latency",
    )
    p.add_argument(
        "--watch-requests",
        default="local/inference",
        metavar="TOPIC",
        help="where --watch times requests from (default local/inference)",
    )
    p.add_argument(
        "--max-results",
        type=int,
        default=None,
        metavar="N",
        help="stop after N results on the watched topic (implies --watch)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument(
        "--stop-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds between SIGTERM and SIGKILL on stop",
    )
    p.add_argument(
        "--restart-backoff",
        type=float,
        default=1.0,
        metavar="S",
        help="back-off before a restart (multiplied by the error count)",
    )
    p.add_argument("--log-level", default="INFO")
    p.set_defaults(handler=_core_run)


def _core_run(args: argparse.Namespace) -> int:
    from ggvision.runner.layout import Layout

    layout = Layout.at(args.root)
    layout.create()
    watching = args.watch is not None or args.max_results is not None
    logs.configure(
        args.log_level.upper(),
        stream=sys.stderr,
        file=layout.core_log,
        # The console belongs to the results while watching; the core's log file keeps it all.
        stream_level=logging.WARNING if watching and not args.echo else None,
    )
    return asyncio.run(_core_run_async(args, layout))


async def _core_run_async(args: argparse.Namespace, layout: Any) -> int:
    from ggvision.core.server import IpcCore
    from ggvision.runner.admin_client import AdminClient
    from ggvision.runner.configuration import read_update_argument
    from ggvision.runner.environment import default_region
    from ggvision.runner.process import console
    from ggvision.runner.recipe import load_recipe_dir
    from ggvision.runner.resolve import resolve
    from ggvision.runner.runner import BROKEN, Runner, RunnerOptions

    try:
        AdminClient(layout.admin_socket, timeout_s=2.0).states()
    except AdminError:
        pass
    else:
        raise GgvisionError(f"a core is already running in {layout.root}; stop it or use --root")

    plan = resolve(load_recipe_dir(args.recipe_dir), args.component)
    update = read_update_argument(args.update_config) if args.update_config else {}
    iot = None
    if args.mqtt_broker:
        from ggvision.core.mqtt import MqttBridge, parse_broker

        host, port = parse_broker(args.mqtt_broker)
        iot = MqttBridge(host, port, client_id=f"ggvision-{args.thing_name}")
    core = IpcCore(layout.ipc_socket, admin_socket_path=layout.admin_socket, iot=iot)
    runner = Runner(
        core,
        plan,
        RunnerOptions(
            layout=layout,
            artifact_dir=args.artifact_dir,
            update=update,
            skip_install=args.skip_install,
            thing_name=args.thing_name,
            region=args.region or default_region(),
            echo=console() if args.echo else None,
            stop_timeout_s=args.stop_timeout,
            restart_backoff_s=args.restart_backoff,
        ),
    )
    monitor = None
    if args.max_results is not None and args.max_results < 1:
        raise GgvisionError("--max-results must be at least 1")
    if args.watch is not None or args.max_results is not None:
        from ggvision.runner.monitor import ResultMonitor

        monitor = ResultMonitor(
            sys.stdout,
            request_topic=args.watch_requests,
            result_topic=args.watch or "local/result",
            max_results=args.max_results,
        )
        monitor.attach(core.pubsub)
        bound = f", stopping after {args.max_results}" if args.max_results else ""
        print(
            f"results on {monitor.result_topic} (latency: {monitor.request_topic} -> result)"
            f"{bound}; Ctrl-C stops; component logs in {layout.logs}",
            flush=True,
        )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    reason = "signal"
    await core.start()
    try:
        await runner.start()
        waits: dict[asyncio.Task[Any], str] = {asyncio.create_task(stop.wait()): "signal"}
        if args.max_runtime is not None:
            waits[asyncio.create_task(asyncio.sleep(args.max_runtime))] = "max-runtime"
        if args.until_done:
            waits[asyncio.create_task(runner.wait_settled())] = "done"
        if monitor is not None and args.max_results is not None:
            waits[asyncio.create_task(monitor.done.wait())] = "max-results"
        done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        reason = waits[next(iter(done))]
        for task in pending:
            task.cancel()
        log.info("stopping (%s)", reason, extra={"event": "core.stopping", "reason": reason})
    finally:
        await runner.stop()
        await core.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    if monitor is not None:
        monitor.detach()
        print(monitor.summary(), file=sys.stderr if args.json else sys.stdout)
    summary = runner.summary()
    if args.json:
        print(
            json.dumps({"reason": reason, "components": [dataclasses.asdict(s) for s in summary]})
        )
    else:
        print(f"stopped ({reason}); logs in {layout.logs}")
        w = max([40, *(len(s.name) + 1 for s in summary)])
        print(f"{'COMPONENT':{w}} {'VERSION':10} {'STATE':10} {'ERRORS':>6} {'STARTS':>6}  EXIT")
        for s in summary:
            exit_code = "-" if s.last_exit is None else str(s.last_exit)
            print(
                f"{s.name:{w}} {s.version:10} {s.state:10} {s.errors:6d} {s.starts:6d}  {exit_code}"
            )
    return 1 if any(s.state == BROKEN for s in summary) else 0


# --- core exec ---------------------------------------------------------------------------------
_FORWARDED = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)


def _install_exec(sub: Any) -> None:
    p = sub.add_parser(
        "exec",
        help="run a command as a component of the running core",
        description="Register a component on the running core, run CMD with the Nucleus "
        "environment (SVCUID, socket path, ...), forward signals, unregister at exit.",
    )
    _add_root(p)
    p.add_argument("--component", default=None, help="component name (default: the recipe's)")
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--recipe",
        type=Path,
        default=None,
        help="take configuration (and accessControl) from this recipe's defaults",
    )
    src.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="SERVICE:OP:RESOURCE",
        help="grant one permission, e.g. pubsub:publish:local/inference (repeatable)",
    )
    _add_identity(p)
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
    p.set_defaults(handler=_core_exec)


def _core_exec(args: argparse.Namespace) -> int:
    from ggvision.runner.admin_client import AdminClient
    from ggvision.runner.allow import access_control
    from ggvision.runner.configuration import initial_configuration
    from ggvision.runner.environment import default_region, nucleus_env
    from ggvision.runner.layout import Layout
    from ggvision.runner.recipe import load_recipe

    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise GgvisionError("core exec needs a command after --")
    layout = Layout.at(args.root)
    client = AdminClient(layout.admin_socket)
    version = "0.0.0"
    defaults: dict[str, Any] | None = None
    if args.recipe is not None:
        recipe = load_recipe(args.recipe)
        name = args.component or recipe.name
        configuration = initial_configuration(recipe, None)
        defaults = dict(recipe.default_configuration)
        version = recipe.version
    else:
        if not args.component:
            raise GgvisionError("core exec needs --component (or --recipe)")
        name = args.component
        configuration = {"accessControl": access_control(args.allow)}
    reg = client.register(name, configuration, defaults=defaults, version=version)
    env = nucleus_env(
        ipc_socket=reg.ipc_socket,
        token=reg.token,
        thing_name=args.thing_name,
        region=args.region or default_region(),
        component_version=version,
    )
    try:
        return _run_forwarding(cmd, env, client, name)
    finally:
        try:
            client.unregister(name)
        except AdminError as exc:
            print(f"ggvision: warning: could not unregister {name}: {exc}", file=sys.stderr)


def _run_forwarding(cmd: list[str], env: dict[str, str], client: Any, name: str) -> int:
    """Run ``cmd`` in its own process group; every forwarded signal goes to it exactly once."""
    try:
        proc = subprocess.Popen(cmd, env=env, process_group=0)  # argv of our own user # nosec B603
    except OSError as exc:
        raise GgvisionError(f"cannot run {cmd[0]}: {exc.strerror or exc}") from exc

    def forward(signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in _FORWARDED}
    _set_state(client, name, "RUNNING")
    try:
        while True:
            try:
                rc = proc.wait()
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries for us
                continue
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _set_state(client, name, "FINISHED" if rc == 0 else "ERRORED")
    return rc if rc >= 0 else 128 - rc


def _set_state(client: Any, name: str, state: str) -> None:
    with contextlib.suppress(AdminError):
        client.request({"op": "set_state", "component": name, "state": state})


# --- core deploy / status ----------------------------------------------------------------------
def _install_deploy(sub: Any) -> None:
    p = sub.add_parser("deploy", help="apply a configuration update to the running core")
    _add_root(p)
    p.add_argument(
        "--update-config",
        required=True,
        metavar="JSON_OR_FILE",
        help='{"Comp": {"MERGE": {...}, "RESET": ["/ptr"]}} inline or in a file',
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=_core_deploy)


def _core_deploy(args: argparse.Namespace) -> int:
    from ggvision.runner.admin_client import AdminClient
    from ggvision.runner.configuration import read_update_argument
    from ggvision.runner.layout import Layout

    update = read_update_argument(args.update_config)
    result = AdminClient(Layout.at(args.root).admin_socket).deploy(update)
    if args.json:
        print(json.dumps(dataclasses.asdict(result)))
    else:
        tail = f": {result.message}" if result.message else ""
        print(f"deployment {result.deployment_id} {result.status}{tail}")
    return 0 if result.status == "SUCCEEDED" else 1


def _install_status(sub: Any) -> None:
    p = sub.add_parser("status", help="component states of the running core")
    _add_root(p)
    p.add_argument("--json", action="store_true", help="print the states as JSON")
    p.set_defaults(handler=_core_status)


def _core_status(args: argparse.Namespace) -> int:
    from ggvision.runner.admin_client import AdminClient
    from ggvision.runner.layout import Layout

    states = AdminClient(Layout.at(args.root).admin_socket).states()
    if args.json:
        print(json.dumps(states, sort_keys=True))
    else:
        for name, state in sorted(states.items()):
            print(f"{name:40} {state}")
    return 0


# --- wiring ------------------------------------------------------------------------------------
def _install_core(sub: Any) -> None:
    p = sub.add_parser("core", help="the local Greengrass IPC core and its component runner")
    core_sub = p.add_subparsers(dest="core_command", required=True, metavar="COMMAND")
    for install in (_install_run, _install_exec, _install_deploy, _install_status):
        install(core_sub)


def _install_plugins(sub: Any) -> None:
    """Commands that installed components contribute (entry point group ``ggvision.commands``).

    Components depend on this library, never the reverse, so ``ggvision classify`` comes from the
    classifier's package: the entry point names a module with ``add_arguments(parser)`` and
    ``handle(args) -> int`` and a docstring whose first line is the help text.
    """
    from importlib.metadata import entry_points

    for ep in sorted(entry_points(group="ggvision.commands"), key=lambda e: e.name):
        try:
            module = ep.load()
        except ImportError as exc:
            log.debug("command %s unavailable: %s", ep.name, exc)
            continue
        summary = (
            getattr(module, "HELP", None) or (module.__doc__ or ep.name).strip().split("\n")[0]
        )
        p = sub.add_parser(
            ep.name,
            help=summary.split(": ", 1)[-1].rstrip("."),
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(handler=module.handle)


# --- recipe validate ---------------------------------------------------------------------------
def _install_recipe(sub: Any) -> None:
    p = sub.add_parser("recipe", help="component recipe tools")
    recipe_sub = p.add_subparsers(dest="recipe_command", required=True, metavar="COMMAND")
    v = recipe_sub.add_parser(
        "validate",
        help="check recipes: schema, 16 KB limit, plain version, the runner's parser",
        description="Validate recipe files (YAML or JSON; keys case-insensitive). Exit 0 when "
        "every file is valid, 2 otherwise.",
    )
    v.add_argument("files", nargs="+", type=Path, metavar="RECIPE")
    v.set_defaults(handler=_recipe_validate)


def _recipe_validate(args: argparse.Namespace) -> int:
    from ggvision.deploy.recipes import validate_recipe_file

    bad = 0
    for path in args.files:
        try:
            problems = validate_recipe_file(path)
        except OSError as exc:
            problems = [exc.strerror or str(exc)]
        if problems:
            bad += 1
            for problem in problems:
                print(f"{path}: {problem}")
        else:
            print(f"{path}: ok")
    return 2 if bad else 0


# --- publish -----------------------------------------------------------------------------------
def _install_publish(sub: Any) -> None:
    p = sub.add_parser(
        "publish",
        help="upload built components, create their versions and deploy them (boto3, no CDK)",
        description="Upload greengrass-build/artifacts under content-hash keys, create a "
        "component version per recipe of --recipe-dir, then one deployment listing every "
        "component for --thing-group or --thing. Needs boto3 (the [publish] extra) and AWS "
        "credentials.",
    )
    p.add_argument("--bucket", required=True, help="an existing S3 bucket for the artifacts")
    p.add_argument("--region", default=None)
    p.add_argument("--prefix", default="artifacts", help="key prefix (default artifacts)")
    p.add_argument("--recipe-dir", type=Path, default=Path("recipes"))
    p.add_argument("--artifact-dir", type=Path, default=Path("greengrass-build/artifacts"))
    p.add_argument("--component", action="append", default=None, metavar="NAME")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--thing-group", default=None)
    target.add_argument("--thing", default=None)
    target.add_argument("--no-deploy", action="store_true", help="create versions only")
    p.add_argument(
        "--configuration",
        default=None,
        metavar="JSON_OR_FILE",
        help='{"<component>": {key: value}} merged over the defaults (validated first)',
    )
    p.add_argument("--deployment-name", default=None)
    p.set_defaults(handler=_publish)


def _publish(args: argparse.Namespace) -> int:
    from ggvision.deploy.publish import built_components, publish

    try:
        import boto3
    except ImportError as exc:
        raise GgvisionError("publish needs boto3: pip install 'ggvision[publish]'") from exc
    components = built_components(args.recipe_dir, args.artifact_dir)
    if args.component:
        missing = set(args.component) - {c.name for c in components}
        if missing:
            raise GgvisionError(f"no built recipe for {sorted(missing)}")
        components = [c for c in components if c.name in args.component]
    configuration: dict[str, Any] = {}
    if args.configuration:
        text = args.configuration
        if not text.lstrip().startswith("{"):
            text = Path(text).read_text()
        configuration = json.loads(text)
    from botocore.exceptions import BotoCoreError, ClientError

    session = boto3.session.Session(region_name=args.region)
    try:
        result = publish(
            components,
            bucket=args.bucket,
            s3=session.client("s3"),
            greengrass=session.client("greengrassv2"),
            iot=None if args.no_deploy else session.client("iot"),
            prefix=args.prefix,
            thing_group=args.thing_group,
            thing=args.thing,
            configuration=configuration,
            deployment_name=args.deployment_name,
        )
    except (BotoCoreError, ClientError) as exc:
        print(f"ggvision: error: AWS: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(dataclasses.asdict(result), sort_keys=True))
    return 0


# Top-level commands; add new ones here.
COMMANDS: list[Callable[[Any], None]] = [
    _install_core,
    _install_recipe,
    _install_publish,
    _install_plugins,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ggvision", description="Greengrass Vision command line.")
    parser.add_argument("--version", action="version", version=f"ggvision {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for install in COMMANDS:
        install(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except AdminError as exc:
        print(f"ggvision: error: {exc}", file=sys.stderr)
        return 1
    except GgvisionError as exc:
        print(f"ggvision: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
