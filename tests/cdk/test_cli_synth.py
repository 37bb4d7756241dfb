"""The real CLI: `npx cdk synth` offline (pinned aws-cdk from cdk/package-lock.json), then
cfn-lint on the template it wrote."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cdk.conftest import CDK_DIR

CLI = CDK_DIR / "node_modules" / ".bin" / "cdk"


@pytest.mark.timeout(600)
def test_cdk_synth_offline_and_cfn_lint(artifact_dir: Path, tmp_path: Path) -> None:
    if not CLI.exists() or shutil.which("node") is None:
        if os.environ.get("GGV_REQUIRE_BUILD"):
            pytest.fail("the CDK CLI is not installed (make setup runs npm ci in cdk/)")
        pytest.skip("the CDK CLI is not installed (cd cdk && npm ci)")
    pinned = json.loads((CDK_DIR / "package.json").read_text())["devDependencies"]["aws-cdk"]
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20",
        CDK_DISABLE_CLI_TELEMETRY="true",
    )
    version = subprocess.run(
        ["npx", "--no-install", "cdk", "--version"],
        cwd=CDK_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert version.stdout.startswith(pinned), version.stdout
    out = tmp_path / "cdk.out"
    proc = subprocess.run(
        [
            "npx",
            "--no-install",
            "cdk",
            "synth",
            "-q",
            "-o",
            str(out),
            "-c",
            f"artifactDir={artifact_dir}",
            "-c",
            "thingGroupName=CiGroup",
            "-c",
            "createTokenExchangeRole=false",
        ],
        cwd=CDK_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    template = out / "GreengrassVision-dev.template.json"
    doc = json.loads(template.read_text())
    kinds = [r["Type"] for r in doc["Resources"].values()]
    assert kinds.count("AWS::GreengrassV2::Deployment") == 1
    assert not (CDK_DIR / "cdk.context.json").exists(), "synthesis made a context lookup"
    lint = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), "-i", "W3005", "--", str(template)],
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
