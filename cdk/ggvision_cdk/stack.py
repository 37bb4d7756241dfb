"""One stack per account, region and stage: the artifact bucket, a component version per built
component and one deployment that lists every component for the target (thing group or thing).

Facts this design follows (see the README's "Deploying" section):

* Component versions are immutable: artifacts live under a content-hash prefix
  (``artifacts/<name>/<version>/<hash12>/``) that is never pruned or overwritten, and every
  ``ComponentVersion`` is retained on replacement and on stack deletion. The version lock test
  (``tests/deploy``) makes sure changed content comes with a new version.
* A target has one active deployment, and a new one removes what it does not list: the single
  ``CfnDeployment`` lists every component, with the configuration merge generated from the
  components' own config models (validated at synth time).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_greengrassv2 as ggv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_iot as iot
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from constructs import Construct

from ggvision_cdk.settings import REPO, Settings

sys.path.insert(0, str(REPO))  # tools.build_components: the same zip names as `make build`

from ggvision.deploy.components import (
    Component,
    configuration_update,
    project_components,
)
from tools.build_components import zip_artifacts

ARTIFACT_ROOT = "artifacts"


def s3_recipe(recipe: dict[str, Any], bucket_name: str, prefix: str, note: str) -> dict[str, Any]:
    """The recipe with every artifact URI pointing at ``s3://bucket/prefix<file>``."""
    out: dict[str, Any] = json.loads(json.dumps(recipe))
    for manifest in out.get("Manifests") or []:
        for art in manifest.get("Artifacts") or []:
            art["URI"] = f"s3://{bucket_name}/{prefix}{str(art['URI']).rsplit('/', 1)[-1]}"
    desc = str(out.get("ComponentDescription", "")).strip()
    out["ComponentDescription"] = f"{desc} ({note})".strip()
    return out


class GreengrassVisionStack(cdk.Stack):
    """Artifacts, component versions and the deployment for one target."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        components: list[Component],
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.settings = settings
        dev = settings.stage == "dev"
        self.bucket = s3.Bucket(
            self,
            "Artifacts",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=not dev,
            removal_policy=cdk.RemovalPolicy.DESTROY if dev else cdk.RemovalPolicy.RETAIN,
            auto_delete_objects=dev,
        )
        self.component_versions: dict[str, ggv2.CfnComponentVersion] = {}
        self.prefixes: dict[str, str] = {}
        for component in components:
            self._component(component)
        self._token_exchange_policy()
        self.deployment = self._deployment(components)
        cdk.CfnOutput(self, "ArtifactBucketName", value=self.bucket.bucket_name)
        cdk.CfnOutput(self, "DeploymentId", value=self.deployment.attr_deployment_id)

    # --- components ----------------------------------------------------------------------------
    def _component(self, component: Component) -> None:
        name, version = component.name, component.version
        source = self.settings.artifact_dir / name / version
        missing = [z for z in zip_artifacts(dict(component.recipe)) if not (source / z).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{name} {version}: {', '.join(missing)} not in {source}; run `make build`"
            )
        fingerprint = cdk.FileSystem.fingerprint(str(source))[:12]
        prefix = f"{ARTIFACT_ROOT}/{name}/{version}/{fingerprint}/"
        self.prefixes[name] = prefix
        cid = name.replace(".", "")
        upload = s3deploy.BucketDeployment(
            self,
            f"Upload{cid}",
            sources=[s3deploy.Source.asset(str(source))],
            destination_bucket=self.bucket,
            destination_key_prefix=prefix,
            prune=False,
            retain_on_delete=True,
            extract=True,
        )
        recipe = s3_recipe(
            dict(component.recipe), self.bucket.bucket_name, prefix, f"artifacts {fingerprint}"
        )
        version_resource = ggv2.CfnComponentVersion(
            self, f"Component{cid}", inline_recipe=cdk.Stack.of(self).to_json_string(recipe)
        )
        # Immutable: a replaced or deleted stack keeps the version (rollback, other groups).
        version_resource.apply_removal_policy(cdk.RemovalPolicy.RETAIN)
        # Greengrass reads the artifacts when the version is created.
        version_resource.node.add_dependency(upload)
        self.component_versions[name] = version_resource

    # --- IAM: the devices' token-exchange role -------------------------------------------------
    def _token_exchange_policy(self) -> None:
        role_name = self.settings.token_exchange_role_name
        role: iam.IRole
        if self.settings.create_token_exchange_role:
            role = iam.Role(
                self,
                "TokenExchangeRole",
                role_name=role_name,
                assumed_by=iam.ServicePrincipal("credentials.iot.amazonaws.com"),
                description="Greengrass core devices' token-exchange role (Greengrass Vision)",
            )
            alias = iot.CfnRoleAlias(
                self,
                "TokenExchangeRoleAlias",
                role_alias=f"{role_name}Alias",
                role_arn=role.role_arn,
            )
            iot.CfnPolicy(
                self,
                "TokenExchangeRoleAliasPolicy",
                policy_name=f"{role_name}AliasPolicy",
                policy_document={
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": "iot:AssumeRoleWithCertificate",
                            "Resource": alias.attr_role_alias_arn,
                        }
                    ],
                },
            )
        else:
            role = iam.Role.from_role_name(self, "TokenExchangeRole", role_name)
        iam.Policy(
            self,
            "ArtifactReadPolicy",
            roles=[role],
            statements=[
                iam.PolicyStatement(
                    actions=["s3:GetObject"],
                    resources=[self.bucket.arn_for_objects(f"{ARTIFACT_ROOT}/*")],
                )
            ],
        )

    # --- deployment ----------------------------------------------------------------------------
    def _target_arn(self) -> str:
        s = self.settings
        if s.thing_name is None and s.create_thing_group:
            group = iot.CfnThingGroup(self, "ThingGroup", thing_group_name=s.target_name)
            return group.attr_arn
        return cdk.Stack.of(self).format_arn(
            service="iot",
            resource=s.target_kind,
            resource_name=s.target_name,
            arn_format=cdk.ArnFormat.SLASH_RESOURCE_NAME,
        )

    def _deployment(self, components: list[Component]) -> ggv2.CfnDeployment:
        specs: dict[str, Any] = {}
        unknown = set(self.settings.component_configuration) - {c.name for c in components}
        if unknown:
            raise ValueError(f"componentConfiguration names unknown components: {sorted(unknown)}")
        for component in components:
            overrides = self.settings.component_configuration.get(component.name, {})
            update = configuration_update(component, overrides)
            config = None
            if update["merge"] or update.get("reset"):
                config = ggv2.CfnDeployment.ComponentConfigurationUpdateProperty(
                    merge=json.dumps(update["merge"], sort_keys=True, separators=(",", ":")),
                    reset=update.get("reset"),
                )
            specs[component.name] = ggv2.CfnDeployment.ComponentDeploymentSpecificationProperty(
                component_version=self.component_versions[component.name].attr_component_version,
                configuration_update=config,
            )
        if self.settings.nucleus_version:
            specs["aws.greengrass.Nucleus"] = (
                ggv2.CfnDeployment.ComponentDeploymentSpecificationProperty(
                    component_version=self.settings.nucleus_version
                )
            )
        return ggv2.CfnDeployment(
            self,
            "Deployment",
            target_arn=self._target_arn(),
            deployment_name=f"greengrass-vision-{self.settings.stage}-{self.settings.target_name}",
            components=specs,
            deployment_policies=ggv2.CfnDeployment.DeploymentPoliciesProperty(
                failure_handling_policy="ROLLBACK",
                component_update_policy=ggv2.CfnDeployment.DeploymentComponentUpdatePolicyProperty(
                    action="NOTIFY_COMPONENTS", timeout_in_seconds=60
                ),
                configuration_validation_policy=ggv2.CfnDeployment.DeploymentConfigurationValidationPolicyProperty(
                    timeout_in_seconds=30
                ),
            ),
        )


# --- cdk-nag -----------------------------------------------------------------------------------
# Each finding, with why it is accepted. Keys are rule ids; a finding names the rule and, for
# IAM4/IAM5, the policy or resource in brackets.
NAG_REASONS: dict[str, str] = {
    "AwsSolutions-S1": "The artifact bucket is written only by this stack's deployments and read "
    "by core devices through the token-exchange role; CloudTrail S3 data events, not server "
    "access logs, are the audit trail, and a log bucket would only move this finding.",
    "AwsSolutions-L1": "The Lambda is CDK's BucketDeployment handler; its runtime is chosen by "
    "aws-cdk-lib and moves with the pinned library version.",
    "AwsSolutions-IAM4": "AWSLambdaBasicExecutionRole on CDK's BucketDeployment handler only "
    "grants writing its own CloudWatch logs.",
    "AwsSolutions-IAM5": "Wildcards are S3 object keys and the actions CDK's BucketDeployment "
    "handler needs to copy its asset objects into this bucket; devices get only s3:GetObject on "
    "artifacts/* (every component version's content-hash prefix) through the token-exchange "
    "role.",
}


def acknowledge_nag_findings(stack: cdk.Stack, findings: list[str]) -> None:
    """Acknowledge each finding (``AwsSolutions-<Rule>[...]`` ids) with its rule's reason."""
    for finding in findings:
        rule = finding.split("::", 1)[-1].split("[", 1)[0]
        reason = NAG_REASONS.get(rule)
        if reason is None:
            raise KeyError(f"no justification for cdk-nag finding {finding}")
        cdk.Validations.of(stack).acknowledge(cdk.Acknowledgment(id=finding, reason=reason))


def nag_findings(stack: GreengrassVisionStack) -> list[str]:
    """The cdk-nag findings this stack raises, by their exact ids (a bare rule does not match);
    each is acknowledged with its rule's reason in NAG_REASONS."""
    bucket = stack.resolve(stack.bucket.bucket_arn)["Fn::GetAtt"][0]
    synthesizer = stack.synthesizer
    assert isinstance(synthesizer, cdk.DefaultStackSynthesizer)
    qualifier = stack.node.try_get_context("@aws-cdk/core:bootstrapQualifier") or (
        cdk.DefaultStackSynthesizer.DEFAULT_QUALIFIER
    )
    assets = f"arn:<AWS::Partition>:s3:::cdk-{qualifier}-assets-<AWS::AccountId>-<AWS::Region>/*"
    managed = "arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
    return [
        "AwsSolutions::AwsSolutions-S1",
        "AwsSolutions::AwsSolutions-L1",
        f"AwsSolutions::AwsSolutions-IAM4[Policy::{managed}]",
        *(
            f"AwsSolutions::AwsSolutions-IAM5[Action::s3:{a}*]"
            for a in ("GetBucket", "GetObject", "List", "Abort", "DeleteObject")
        ),
        f"AwsSolutions::AwsSolutions-IAM5[Resource::{assets}]",
        f"AwsSolutions::AwsSolutions-IAM5[Resource::<{bucket}.Arn>/*]",
        f"AwsSolutions::AwsSolutions-IAM5[Resource::<{bucket}.Arn>/{ARTIFACT_ROOT}/*]",
    ]


def build_app(app: cdk.App, components: list[Component] | None = None) -> GreengrassVisionStack:
    """The app's one stack, from the context of ``app``."""
    settings = Settings.from_context(app.node)
    every = components if components is not None else project_components(REPO)
    if settings.components:
        unknown = set(settings.components) - {c.name for c in every}
        if unknown:
            raise ValueError(f"context components: unknown {sorted(unknown)}")
        every = [c for c in every if c.name in settings.components]
    account, region = os.environ.get("CDK_DEFAULT_ACCOUNT"), os.environ.get("CDK_DEFAULT_REGION")
    env = cdk.Environment(account=account, region=region) if account and region else None
    stack = GreengrassVisionStack(
        app,
        f"GreengrassVision-{settings.stage}",
        settings=settings,
        components=every,
        env=env,
        description="Greengrass Vision: component versions and their deployment",
    )
    cdk.Tags.of(stack).add("project", "greengrass-vision")
    cdk.Tags.of(stack).add("stage", settings.stage)
    if settings.nag:
        from cdk_nag import AwsSolutionsChecks

        cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
        acknowledge_nag_findings(stack, nag_findings(stack))
    return stack
