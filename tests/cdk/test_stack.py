"""The synthesized template: bucket hardening, immutable component versions under content-hash
prefixes, one deployment listing every component, least-privilege IAM, cdk-nag."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template

from ggvision.deploy.access import declared_grants, used_grants
from ggvision.deploy.components import project_components
from ggvision.deploy.recipes import schema_errors
from ggvision.errors import ConfigError
from tests.cdk.conftest import REPO, Synth

COMPONENTS = {c.name: c for c in project_components(REPO)}
# The first synthesis starts the jsii runtime (seconds; more under load).
pytestmark = pytest.mark.timeout(600)


def _resources(template: Template, kind: str) -> dict[str, Any]:
    found: dict[str, Any] = template.find_resources(kind)
    return found


def _only(template: Template, kind: str) -> Any:
    found = list(_resources(template, kind).values())
    assert len(found) == 1, f"{len(found)} x {kind}"
    return found[0]


def _render(value: Any, bucket: str = "BUCKET") -> str:
    """A Fn::Join as text: the bucket Ref as ``bucket``, pseudo parameters as ``<AWS::...>``,
    GetAtt as ``<Resource.Attribute>``."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        sep, parts = value["Fn::Join"]
        return str(sep).join(_render(p, bucket) for p in parts)
    if "Ref" in value:
        return f"<{value['Ref']}>" if value["Ref"].startswith("AWS::") else bucket
    if "Fn::GetAtt" in value:
        return "<{}.{}>".format(*value["Fn::GetAtt"])
    raise AssertionError(f"unexpected token {value}")


def _recipes(template: Template) -> dict[str, tuple[str, dict[str, Any]]]:
    out = {}
    for lid, res in _resources(template, "AWS::GreengrassV2::ComponentVersion").items():
        recipe = json.loads(_render(res["Properties"]["InlineRecipe"]))
        out[recipe["ComponentName"]] = (lid, recipe)
    return out


def test_bucket_is_private_tls_only_encrypted(dev: tuple[Any, Template]) -> None:
    _, t = dev
    bucket = _only(t, "AWS::S3::Bucket")
    props = bucket["Properties"]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    sse = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    t.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Action": "s3:*",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            }
        },
    )
    # dev: the bucket and its objects go with the stack.
    assert bucket["DeletionPolicy"] == "Delete"
    assert _resources(t, "Custom::S3AutoDeleteObjects")


def test_prod_keeps_the_bucket_and_versions_it(synth: Synth) -> None:
    _, t = synth(stage="prod")
    bucket = _only(t, "AWS::S3::Bucket")
    assert bucket["DeletionPolicy"] == "Retain"
    assert bucket["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}
    assert not _resources(t, "Custom::S3AutoDeleteObjects")


def test_one_retained_component_version_per_component(
    dev: tuple[Any, Template], artifact_dir: Path
) -> None:
    _, t = dev
    recipes = _recipes(t)
    assert set(recipes) == set(COMPONENTS)
    uploads = _resources(t, "Custom::CDKBucketDeployment")
    versions = _resources(t, "AWS::GreengrassV2::ComponentVersion")
    for name, (lid, recipe) in recipes.items():
        c = COMPONENTS[name]
        assert recipe["ComponentVersion"] == c.version
        assert schema_errors(recipe) == []
        res = versions[lid]
        assert res["DeletionPolicy"] == "Retain" and res["UpdateReplacePolicy"] == "Retain"
        fp = cdk.FileSystem.fingerprint(str(artifact_dir / name / c.version))[:12]
        prefix = f"artifacts/{name}/{c.version}/{fp}/"
        uris = {a["URI"] for m in recipe["Manifests"] for a in m.get("Artifacts", [])}
        assert uris and all(u.startswith(f"s3://BUCKET/{prefix}") for u in uris), uris
        if name == "com.custom.ImageClassification.ModelStore":  # modelKey auto's reference
            assert f"s3://BUCKET/{prefix}reference.zip" in uris, uris
        # The version depends on the upload that puts exactly that prefix in place.
        upload = [
            u_lid
            for u_lid, u in uploads.items()
            if u["Properties"]["DestinationBucketKeyPrefix"] == prefix
        ]
        assert len(upload) == 1
        assert upload[0] in res["DependsOn"]
        props = uploads[upload[0]]["Properties"]
        assert props["Prune"] is False and props["RetainOnDelete"] is True
        # Everything else is the source recipe.
        source = json.loads(json.dumps(dict(c.recipe)))
        for key in ("Manifests", "ComponentDescription"):
            source.pop(key)
            recipe.pop(key)
        assert recipe == source


def test_changed_artifact_changes_prefix_and_nothing_else(
    synth: Synth, dev: tuple[Any, Template], artifact_dir: Path, tmp_path: Path
) -> None:
    _, again = synth()
    assert again.to_json() == dev[1].to_json(), "synthesis is not deterministic"
    changed = tmp_path / "artifacts"
    shutil.copytree(artifact_dir, changed)
    name = "com.custom.requester"
    c = COMPONENTS[name]
    target = next((changed / name / c.version).iterdir())
    target.write_bytes(target.read_bytes() + b"\0")
    _, t = synth(artifactDir=str(changed))
    before, after = _recipes(dev[1]), _recipes(t)
    for other in set(COMPONENTS) - {name}:
        assert before[other] == after[other]
    uri = lambda r: r[1]["Manifests"][0]["Artifacts"][0]["URI"]  # noqa: E731
    assert uri(before[name]) != uri(after[name])


def test_one_deployment_lists_every_component(dev: tuple[Any, Template]) -> None:
    _, t = dev
    deployment = _only(t, "AWS::GreengrassV2::Deployment")["Properties"]
    recipes = _recipes(t)
    assert set(deployment["Components"]) == set(COMPONENTS)
    for name, spec in deployment["Components"].items():
        assert spec["ComponentVersion"] == {"Fn::GetAtt": [recipes[name][0], "ComponentVersion"]}
        assert "ConfigurationUpdate" not in spec  # defaults: nothing to merge
    assert deployment["DeploymentPolicies"]["FailureHandlingPolicy"] == "ROLLBACK"
    assert deployment["DeploymentPolicies"]["ComponentUpdatePolicy"]["Action"] == (
        "NOTIFY_COMPONENTS"
    )
    target = _render(deployment["TargetArn"])
    assert target.endswith(f":thinggroup/{dev[0].settings.thing_group_name}")


def test_thing_target_and_created_group(synth: Synth) -> None:
    _, t = synth(thingName="Camera01")
    arn = _render(_only(t, "AWS::GreengrassV2::Deployment")["Properties"]["TargetArn"])
    assert arn.endswith(":thing/Camera01")
    _, t = synth(thingGroupName="Lab", createThingGroup="true")
    group = _resources(t, "AWS::IoT::ThingGroup")
    assert [g["Properties"]["ThingGroupName"] for g in group.values()] == ["Lab"]
    target = _only(t, "AWS::GreengrassV2::Deployment")["Properties"]["TargetArn"]
    assert target == {"Fn::GetAtt": [next(iter(group)), "Arn"]}


def test_configuration_merge_from_the_config_models(synth: Synth) -> None:
    name = "com.custom.ImageClassifier"
    overrides = {name: {"topK": 3, "resultTopic": "site/results"}}
    _, t = synth(componentConfiguration=json.dumps(overrides))
    spec = _only(t, "AWS::GreengrassV2::Deployment")["Properties"]["Components"][name]
    merge = json.loads(spec["ConfigurationUpdate"]["Merge"])
    assert merge["topK"] == 3 and merge["resultTopic"] == "site/results"
    # The topic changed: accessControl is reset and regenerated to grant exactly the new topics.
    assert spec["ConfigurationUpdate"]["Reset"] == ["/accessControl"]
    c = COMPONENTS[name]
    model = c.model
    assert model is not None
    config = model.from_raw({**c.defaults, **overrides[name]})
    assert declared_grants(merge["accessControl"]) == used_grants(config)
    assert any(g[2] == "site/results" for g in used_grants(config))


def test_invalid_configuration_fails_synthesis(synth: Synth) -> None:
    with pytest.raises(ConfigError, match="topK"):
        synth(componentConfiguration={"com.custom.ImageClassifier": {"topK": 0}})
    with pytest.raises(ValueError, match="unknown components"):
        synth(componentConfiguration={"com.example.Nope": {}})


def test_token_exchange_role_reads_artifacts_only(dev: tuple[Any, Template]) -> None:
    _, t = dev
    policies = [
        p["Properties"]
        for p in _resources(t, "AWS::IAM::Policy").values()
        if p["Properties"].get("Roles") == ["GreengrassV2TokenExchangeRole"]
    ]
    assert len(policies) == 1
    (statement,) = policies[0]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow" and statement["Action"] == "s3:GetObject"
    bucket = next(iter(_resources(t, "AWS::S3::Bucket")))
    assert _render(statement["Resource"]) == f"<{bucket}.Arn>/artifacts/*"
    assert not _resources(t, "AWS::IoT::RoleAlias")


def test_stack_can_create_role_and_alias(synth: Synth) -> None:
    _, t = synth(createTokenExchangeRole="true", tokenExchangeRoleName="GgvTes")
    alias = _only(t, "AWS::IoT::RoleAlias")
    assert alias["Properties"]["RoleAlias"] == "GgvTesAlias"
    t.has_resource_properties(
        "AWS::IAM::Role",
        {
            "RoleName": "GgvTes",
            "AssumeRolePolicyDocument": {
                "Statement": [
                    Match.object_like({"Principal": {"Service": "credentials.iot.amazonaws.com"}})
                ]
            },
        },
    )
    t.has_resource_properties(
        "AWS::IoT::Policy",
        {
            "PolicyDocument": Match.object_like(
                {"Statement": [Match.object_like({"Action": "iot:AssumeRoleWithCertificate"})]}
            )
        },
    )


def test_false_strings_from_the_cli_are_false(synth: Synth) -> None:
    _, t = synth(createTokenExchangeRole="false", createThingGroup="False")
    assert not _resources(t, "AWS::IoT::RoleAlias")
    assert not _resources(t, "AWS::IoT::ThingGroup")


def test_cdk_nag_findings_are_all_acknowledged_with_reasons(
    dev: tuple[Any, Template], tmp_path: Path
) -> None:
    from ggvision_cdk.stack import NAG_REASONS

    stack, _ = dev
    report = json.loads((Path(stack.node.root.outdir) / "validation-report.json").read_text())
    (plugin,) = report["pluginReports"]
    assert plugin["pluginName"] == "AwsSolutions" and plugin["conclusion"] == "success"
    assert plugin["violations"] == []
    assert plugin["suppressedViolations"]
    for finding in plugin["suppressedViolations"]:
        rule = finding["ruleName"].split("[")[0]
        assert finding["reason"] == NAG_REASONS[rule]
    for reason in NAG_REASONS.values():
        assert reason.endswith(".") and len(reason) > 40


def test_cdk_nag_fails_without_the_acknowledgments(
    artifact_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checks really run: with no acknowledgment, synthesis fails on the findings."""
    import ggvision_cdk.stack as stack_module

    from tests.cdk.conftest import BASE_CONTEXT

    monkeypatch.setattr(stack_module, "acknowledge_nag_findings", lambda stack, findings: None)
    app = cdk.App(context={**BASE_CONTEXT, "artifactDir": str(artifact_dir)}, outdir=str(tmp_path))
    stack_module.build_app(app)
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    rules = {v["ruleName"].split("[")[0] for p in report["pluginReports"] for v in p["violations"]}
    assert {"AwsSolutions-S1", "AwsSolutions-IAM5"} <= rules


def test_component_subset_and_nucleus_version(synth: Synth) -> None:
    subset = ["com.custom.ImageClassification.ModelStore", "com.custom.ImageClassifier"]
    _, t = synth(components=",".join(subset), nucleusVersion="2.14.3")
    assert set(_recipes(t)) == set(subset)
    specs = _only(t, "AWS::GreengrassV2::Deployment")["Properties"]["Components"]
    assert set(specs) == {*subset, "aws.greengrass.Nucleus"}
    assert specs["aws.greengrass.Nucleus"] == {"ComponentVersion": "2.14.3"}
    with pytest.raises(ValueError, match="unknown"):
        synth(components="com.example.Nope")
    with pytest.raises(ValueError, match="stage"):
        synth(stage="qa")
