#!/usr/bin/env python3
"""``cdk synth`` / ``cdk deploy`` entry point (see ggvision_cdk.stack and the README)."""

from __future__ import annotations

import aws_cdk as cdk
from ggvision_cdk.stack import build_app


def main() -> None:
    app = cdk.App()
    build_app(app)
    app.synth()


if __name__ == "__main__":
    main()
