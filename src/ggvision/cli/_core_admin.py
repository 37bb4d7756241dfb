"""``ggvision core deploy`` and ``ggvision core status``: requests to the running core's admin
socket."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from ggvision.cli._args import add_root


def install_deploy(sub: Any) -> None:
    p = sub.add_parser("deploy", help="apply a configuration update to the running core")
    add_root(p)
    p.add_argument(
        "--update-config",
        required=True,
        metavar="JSON_OR_FILE",
        help='{"Comp": {"MERGE": {...}, "RESET": ["/ptr"]}} inline or in a file',
    )
    p.add_argument(
        "--component-update-action",
        choices=("NOTIFY_COMPONENTS", "SKIP_NOTIFY_COMPONENTS"),
        default=None,
        help="componentUpdatePolicy action, as in CreateDeployment: notify "
        "SubscribeToComponentUpdates subscribers and let them defer (default: NOTIFY_COMPONENTS)",
    )
    p.add_argument(
        "--component-update-timeout",
        type=float,
        default=None,
        metavar="S",
        help="componentUpdatePolicy timeoutInSeconds: how long each notification round waits "
        "for DeferComponentUpdate answers (default: the core's, 60)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=core_deploy)


def core_deploy(args: argparse.Namespace) -> int:
    from ggvision.runner.admin_client import AdminClient
    from ggvision.runner.configuration import read_update_argument
    from ggvision.runner.layout import Layout

    update = read_update_argument(args.update_config)
    policy: dict[str, Any] = {}
    if args.component_update_action is not None:
        policy["action"] = args.component_update_action
    if args.component_update_timeout is not None:
        policy["timeoutInSeconds"] = args.component_update_timeout
    result = AdminClient(Layout.at(args.root).admin_socket).deploy(update, policy or None)
    if args.json:
        print(json.dumps(dataclasses.asdict(result)))
    else:
        tail = f": {result.message}" if result.message else ""
        print(f"deployment {result.deployment_id} {result.status}{tail}")
    return 0 if result.status == "SUCCEEDED" else 1


def install_status(sub: Any) -> None:
    p = sub.add_parser("status", help="component states of the running core")
    add_root(p)
    p.add_argument("--json", action="store_true", help="print the states as JSON")
    p.set_defaults(handler=core_status)


def core_status(args: argparse.Namespace) -> int:
    from ggvision.runner.admin_client import AdminClient
    from ggvision.runner.layout import Layout

    states = AdminClient(Layout.at(args.root).admin_socket).states()
    if args.json:
        print(json.dumps(states, sort_keys=True))
    else:
        for name, state in sorted(states.items()):
            print(f"{name:40} {state}")
    return 0
