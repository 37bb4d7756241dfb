"""The CDK app, synthesized in-process against a throw-away artifact tree (or the real build)."""

from __future__ import annotations

import json
import os
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CDK_DIR = REPO / "cdk"
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("CDK_DISABLE_CLI_TELEMETRY", "true")
pytest.importorskip("aws_cdk", reason="the [cdk] extra is not installed (make setup)")
if str(CDK_DIR) not in sys.path:
    sys.path.insert(0, str(CDK_DIR))

import aws_cdk as cdk  # noqa: E402
from aws_cdk.assertions import Template  # noqa: E402

from ggvision.deploy.components import project_components  # noqa: E402
from tools.build_components import zip_artifacts  # noqa: E402

BASE_CONTEXT: dict[str, Any] = json.loads((CDK_DIR / "cdk.json").read_text())["context"]

Synth = Callable[..., tuple[Any, Template]]


def fake_artifacts(root: Path) -> Path:
    """``<root>/<name>/<version>/<zip>`` for every recipe: small zips named as the recipes say."""
    for c in project_components(REPO):
        folder = root / c.name / c.version
        folder.mkdir(parents=True, exist_ok=True)
        for name in zip_artifacts(dict(c.recipe)):
            with zipfile.ZipFile(folder / name, "w") as zf:
                zf.writestr(zipfile.ZipInfo("README.txt", (2020, 1, 1, 0, 0, 0)), f"{c.name}\n")
    return root


@pytest.fixture(scope="session")
def artifact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fake_artifacts(tmp_path_factory.mktemp("artifacts"))


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory, artifact_dir: Path) -> Iterator[Synth]:
    from ggvision_cdk.stack import build_app

    def run(**context: Any) -> tuple[Any, Template]:
        ctx = {**BASE_CONTEXT, "artifactDir": str(artifact_dir), **context}
        app = cdk.App(context=ctx, outdir=str(tmp_path_factory.mktemp("cdk.out")))
        stack = build_app(app)
        app.synth()  # runs cdk-nag (context nag=true): raises on an unacknowledged finding
        return stack, Template.from_stack(stack)

    yield run


@pytest.fixture(scope="session")
def dev(synth: Synth) -> tuple[Any, Template]:
    return synth()
