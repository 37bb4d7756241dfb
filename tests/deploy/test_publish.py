"""``ggvision publish``: S3 and IoT through moto, Greengrass v2 through a botocore Stubber (moto
has no Greengrass v2), which checks every request against the service model."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest

boto3 = pytest.importorskip("boto3")
moto = pytest.importorskip("moto")

from botocore.stub import ANY, Stubber  # noqa: E402

from ggvision.deploy.access import declared_grants  # noqa: E402
from ggvision.deploy.publish import built_components, publish  # noqa: E402
from ggvision.deploy.recipes import schema_errors  # noqa: E402
from ggvision.errors import ConfigError, GgvisionError  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
REGION = "eu-west-1"
BUCKET = "ggv-artifacts-test"
NAMES = ("com.custom.requester", "com.custom.ImageClassifier")


@pytest.fixture
def built(tmp_path: Path) -> tuple[Path, Path]:
    """recipes/ + artifacts/ for two components, as `make build` lays them out."""
    recipes, artifacts = tmp_path / "recipes", tmp_path / "artifacts"
    recipes.mkdir()
    for name in NAMES:
        src = REPO / "components" / name / "recipe.yaml"
        shutil.copyfile(src, recipes / f"{name}-0.1.0.yaml")
        folder = artifacts / name / "0.1.0"
        folder.mkdir(parents=True)
        zip_name = "requester.zip" if name.endswith("requester") else "classifier.zip"
        with zipfile.ZipFile(folder / zip_name, "w") as zf:
            zf.writestr("requirements.txt", f"# {name}\n")
    return recipes, artifacts


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Any:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(key, value)
    with moto.mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        iot = boto3.client("iot", region_name=REGION)
        iot.create_thing_group(thingGroupName="Lab")
        iot.create_thing(thingName="Cam01")
        yield s3, iot


def _greengrass() -> tuple[Any, Stubber, list[dict[str, Any]]]:
    gg = boto3.client("greengrassv2", region_name=REGION)
    calls: list[dict[str, Any]] = []

    def capture(params: dict[str, Any], **_: Any) -> None:
        calls.append(json.loads(json.dumps(params, default=lambda b: b.decode())))

    gg.meta.events.register("provide-client-params.greengrassv2.*", capture)
    return gg, Stubber(gg), calls


def test_publish_uploads_creates_versions_and_deploys(
    built: tuple[Path, Path], aws: tuple[Any, Any]
) -> None:
    s3, iot = aws
    components = built_components(*built)
    gg, stub, calls = _greengrass()
    for name in sorted(NAMES):
        stub.add_response(
            "create_component_version",
            {
                "componentName": name,
                "componentVersion": "0.1.0",
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "status": {"componentState": "DEPLOYABLE"},
            },
            {"inlineRecipe": ANY},
        )
    group_arn = iot.describe_thing_group(thingGroupName="Lab")["thingGroupArn"]
    stub.add_response(
        "create_deployment",
        {"deploymentId": "d-1"},
        {
            "targetArn": group_arn,
            "deploymentName": "greengrass-vision-Lab",
            "components": ANY,
            "deploymentPolicies": {
                "failureHandlingPolicy": "ROLLBACK",
                "componentUpdatePolicy": {"timeoutInSeconds": 60, "action": "NOTIFY_COMPONENTS"},
                "configurationValidationPolicy": {"timeoutInSeconds": 30},
            },
        },
    )
    config = {"com.custom.ImageClassifier": {"topK": 2, "resultTopic": "lab/result"}}
    with stub:
        result = publish(
            components,
            bucket=BUCKET,
            s3=s3,
            greengrass=gg,
            iot=iot,
            thing_group="Lab",
            configuration=config,
            log=lambda _: None,
        )
        stub.assert_no_pending_responses()
    assert result.deployment_id == "d-1" and sorted(result.created) == sorted(NAMES)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert keys == set(result.uploaded) and len(keys) == 2
    for call in calls[:2]:
        recipe = json.loads(call["inlineRecipe"])
        assert schema_errors(recipe) == []
        uri = recipe["Manifests"][0]["Artifacts"][0]["URI"]
        key = uri.removeprefix(f"s3://{BUCKET}/")
        assert key in keys
        assert key.startswith(f"artifacts/{recipe['ComponentName']}/0.1.0/")
    components_sent = calls[2]["components"]
    assert set(components_sent) == set(NAMES)
    assert "configurationUpdate" not in components_sent["com.custom.requester"]
    update = components_sent["com.custom.ImageClassifier"]["configurationUpdate"]
    merge = json.loads(update["merge"])
    assert merge["topK"] == 2 and update["reset"] == ["/accessControl"]
    assert ("aws.greengrass.ipc.pubsub", "aws.greengrass#PublishToTopic", "lab/result") in (
        declared_grants(merge["accessControl"])
    )


def test_republish_skips_uploads_and_existing_versions(
    built: tuple[Path, Path], aws: tuple[Any, Any]
) -> None:
    s3, _ = aws
    components = built_components(*built)
    for attempt in range(2):
        gg, stub, _ = _greengrass()
        for _name in NAMES:
            if attempt == 0:
                stub.add_response(
                    "create_component_version",
                    {
                        "componentName": "x",
                        "componentVersion": "0.1.0",
                        "creationTimestamp": "2026-01-01T00:00:00Z",
                        "status": {},
                    },
                )
            else:
                stub.add_client_error(
                    "create_component_version", "ConflictException", http_status_code=409
                )
        with stub:
            result = publish(components, bucket=BUCKET, s3=s3, greengrass=gg, log=lambda _: None)
        if attempt == 0:
            assert len(result.uploaded) == 2 and result.existing == []
        else:
            assert result.uploaded == [] and sorted(result.existing) == sorted(NAMES)
            assert result.deployment_id is None


def test_thing_target_and_bad_input(built: tuple[Path, Path], aws: tuple[Any, Any]) -> None:
    s3, iot = aws
    components = built_components(*built)
    gg, stub, calls = _greengrass()
    with stub, pytest.raises(ConfigError, match="topK"):
        publish(
            components,
            bucket=BUCKET,
            s3=s3,
            greengrass=gg,
            iot=iot,
            thing="Cam01",
            configuration={"com.custom.ImageClassifier": {"topK": 0}},
        )
    assert calls == [] and "Contents" not in s3.list_objects_v2(Bucket=BUCKET)
    with pytest.raises(GgvisionError, match="unknown components"):
        publish(components, bucket=BUCKET, s3=s3, greengrass=gg, configuration={"x.Y": {}})
    (built[1] / "com.custom.requester" / "0.1.0" / "requester.zip").unlink()
    with pytest.raises(GgvisionError, match="make build"):
        built_components(*built)


def test_target_arns_come_from_iot(aws: tuple[Any, Any]) -> None:
    from ggvision.deploy.publish import target_arn

    _, iot = aws
    assert target_arn(iot, thing_group=None, thing="Cam01").endswith(":thing/Cam01")
    assert target_arn(iot, thing_group="Lab", thing=None).endswith(":thinggroup/Lab")
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        target_arn(iot, thing_group="Nope", thing=None)
    with pytest.raises(GgvisionError):
        target_arn(iot, thing_group=None, thing=None)


def test_cli_wiring(
    built: tuple[Path, Path], aws: tuple[Any, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """The command reaches AWS through boto3: moto stores the upload; moto has no Greengrass v2,
    so CreateComponentVersion fails there and the command reports it (exit 1)."""
    from ggvision.cli import main

    s3, _ = aws
    recipes, artifacts = built
    args = ["publish", "--bucket", BUCKET, "--region", REGION]
    args += ["--recipe-dir", str(recipes), "--artifact-dir", str(artifacts)]
    with pytest.raises(SystemExit):
        main(args)  # no target given
    assert main([*args, "--no-deploy", "--component", "com.example.Nope"]) == 2
    rc = main([*args, "--no-deploy", "--component", "com.custom.requester"])
    assert rc == 1
    assert "AWS:" in capsys.readouterr().err
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert len(keys) == 1 and keys[0].startswith("artifacts/com.custom.requester/0.1.0/")
