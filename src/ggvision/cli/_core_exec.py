"""``ggvision core exec``: run a command as a component of the running core, with the Nucleus
environment, its signals forwarded, unregistered at exit."""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from ggvision.cli._args import add_identity, add_root
from ggvision.errors import AdminError, GgvisionError

_FORWARDED = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)


def install_exec(sub: Any) -> None:
    p = sub.add_parser(
        "exec",
        help="run a command as a component of the running core",
        description="Register a component on the running core, run CMD with the Nucleus "
        "environment (SVCUID, socket path, ...), forward signals, unregister at exit.",
    )
    add_root(p)
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
    add_identity(p)
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
    p.set_defaults(handler=core_exec)


def core_exec(args: argparse.Namespace) -> int:
    from ggvision.core.environment import default_region, nucleus_env
    from ggvision.runner.admin_client import AdminClient
    from ggvision.runner.allow import access_control
    from ggvision.runner.configuration import initial_configuration
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
