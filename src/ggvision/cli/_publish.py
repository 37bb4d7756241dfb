"""``ggvision publish``: upload built components, create their versions and deploy them with
boto3."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from ggvision.errors import GgvisionError


def install_publish(sub: Any) -> None:
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
    p.set_defaults(handler=publish_command)


def publish_command(args: argparse.Namespace) -> int:
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
