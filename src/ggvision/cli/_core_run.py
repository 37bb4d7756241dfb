"""``ggvision core run``: start a local IPC core and run recipes' components through their
lifecycles (optionally watching results) until a signal, a time limit or they are done."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from ggvision import logs
from ggvision.cli._args import add_identity, add_root
from ggvision.core.limits import MIB, NUCLEUS, PROFILES, Limits
from ggvision.errors import AdminError, GgvisionError

# The command line's logger, one name across its modules.
log = logging.getLogger("ggvision.cli")


def install_run(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run components from recipes against a local IPC core",
        description="Start a local IPC core and run the components of --recipe-dir (default: "
        "recipes/ in the current folder, as greengrass-cli users run it from a project root) and "
        "their dependencies through their lifecycles until interrupted.",
    )
    add_root(p)
    p.add_argument(
        "--recipe-dir",
        type=Path,
        default=None,
        help="folder of *.yaml|*.yml|*.json (default: ./recipes when it exists)",
    )
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
    add_identity(p)
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
    add_limits(p)
    p.add_argument("--log-level", default="INFO")
    p.set_defaults(handler=core_run)


def add_limits(p: argparse.ArgumentParser) -> None:
    """The core's bounds on local clients (:class:`ggvision.core.limits.Limits`)."""
    d = Limits()
    g = p.add_argument_group("limits of the IPC core")
    g.add_argument(
        "--profile",
        choices=PROFILES,
        default=NUCLEUS,
        help="whose limits to keep to: nucleus (the Java Nucleus, default) or lite (Greengrass "
        "nucleus lite: 10,000-byte messages, 50 clients, 100 subscriptions, 256-byte topics, "
        'its operations only; see README "Local IPC core")',
    )
    g.add_argument(
        "--outbound-budget",
        type=int,
        default=d.outbound_total // MIB,
        metavar="MIB",
        help="bytes queued for slow readers, all connections together; over it the one with "
        "the most is dropped (default %(default)s MiB)",
    )
    g.add_argument(
        "--component-outbound-budget",
        type=int,
        default=d.outbound_per_component // MIB,
        metavar="MIB",
        help="the same for one component's connections (default %(default)s MiB)",
    )
    g.add_argument(
        "--connections-per-token",
        type=int,
        default=d.connections_per_token,
        metavar="N",
        help="connections one component may hold at once (default %(default)s)",
    )
    g.add_argument(
        "--handshake-timeout",
        type=float,
        default=d.handshake_timeout_s,
        metavar="S",
        help="a connection not authenticated within S seconds is dropped (default %(default)s)",
    )


def limits_of(args: argparse.Namespace) -> Limits:
    return Limits.for_profile(
        args.profile,
        outbound_total=args.outbound_budget * MIB,
        outbound_per_component=args.component_outbound_budget * MIB,
        connections_per_token=args.connections_per_token,
        handshake_timeout_s=args.handshake_timeout,
    )


def recipe_dir_of(args: argparse.Namespace) -> Path:
    """--recipe-dir, or ./recipes when it is not given (GgvisionError when neither is there)."""
    if args.recipe_dir is not None:
        return Path(args.recipe_dir)
    default = Path("recipes")
    if not default.is_dir():
        raise GgvisionError(
            "no --recipe-dir given and no recipes/ folder here: name one, or run from the "
            "project root after `make build` (which writes recipes/)"
        )
    return default


def core_run(args: argparse.Namespace) -> int:
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
    from ggvision.core import eventloop

    return eventloop.run(_core_run_async(args, layout))  # uvloop's loop when it is installed


async def _core_run_async(args: argparse.Namespace, layout: Any) -> int:
    from ggvision.core.admin import AdminServer
    from ggvision.core.environment import default_region
    from ggvision.core.server import IpcCore
    from ggvision.runner.admin_client import AdminClient
    from ggvision.runner.configuration import read_update_argument
    from ggvision.runner.process import console
    from ggvision.runner.recipe import load_recipe_dir
    from ggvision.runner.resolve import resolve
    from ggvision.runner.runner import BROKEN, Runner, RunnerOptions

    limits = limits_of(args)  # before anything starts: a bad value is a usage error
    try:
        AdminClient(layout.admin_socket, timeout_s=2.0).states()
    except AdminError:
        pass
    else:
        raise GgvisionError(f"a core is already running in {layout.root}; stop it or use --root")

    plan = resolve(load_recipe_dir(recipe_dir_of(args)), args.component)
    update = read_update_argument(args.update_config) if args.update_config else {}
    iot = None
    if args.mqtt_broker:
        from ggvision.core.mqtt import MqttBridge, parse_broker

        host, port = parse_broker(args.mqtt_broker)
        iot = MqttBridge(host, port, client_id=f"ggvision-{args.thing_name}")
    core = IpcCore(layout.ipc_socket, iot=iot, limits=limits)
    admin = AdminServer(core, layout.admin_socket)
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
    await admin.start()
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
        await admin.stop()
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
