"""Connect/refuse, state reporting, unsupported operations, greengrass-cli operations (component
updates and deferral: ``test_component_updates.py``)."""

from __future__ import annotations

import time

import pytest

from ggvision.testing.agent import AgentError, AgentProcess
from ggvision.testing.harness import CoreThread
from tests.conftest import AgentFactory

CLI_POLICY = {
    "aws.greengrass.Cli": {
        "cli:1": {
            "operations": [
                "aws.greengrass#CreateLocalDeployment",
                "aws.greengrass#GetLocalDeploymentStatus",
                "aws.greengrass#ListLocalDeployments",
                "aws.greengrass#ListComponents",
            ],
            "resources": ["*"],
        }
    }
}


def test_unknown_token_is_refused_with_access_denied(core: CoreThread) -> None:
    env = core.component_env("com.test.A")
    env["SVCUID"] = "not-a-registered-token"
    with pytest.raises(AgentError) as info:
        AgentProcess(env)
    assert info.value.error == "AccessDeniedError"


def test_unregistered_component_token_stops_working(core: CoreThread) -> None:
    env = core.component_env("com.test.Gone")
    core.call(lambda: core.ipc.unregister_component("com.test.Gone"))
    with pytest.raises(AgentError) as info:
        AgentProcess(env)
    assert info.value.error == "AccessDeniedError"


def test_update_state_is_observable(agent: AgentFactory, core: CoreThread) -> None:
    seen: list[tuple[str, str]] = []
    core.call(lambda: core.ipc.add_state_listener(lambda c, s: seen.append((c, s))))
    a = agent("com.test.A")
    a("call", method="update_state", kwargs={"state": "RUNNING"})
    assert core.state_of("com.test.A") == "RUNNING"
    a("call", method="update_state", kwargs={"state": "ERRORED"})
    assert core.state_of("com.test.A") == "ERRORED"
    assert seen == [("com.test.A", "RUNNING"), ("com.test.A", "ERRORED")]
    reply = a.request("call", method="update_state", kwargs={"state": "BROKEN"})
    assert reply["error"] == "InvalidArgumentsError"


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("get_secret_value", {"secret_id": "s"}),
        ("get_thing_shadow", {"thing_name": "t"}),
        ("restart_component", {"component_name": "c"}),
    ],
)
def test_unsupported_operations_get_a_modeled_service_error(
    agent: AgentFactory, method: str, kwargs: dict[str, str]
) -> None:
    a = agent(
        "com.test.A",
        {"aws.greengrass.SecretManager": {"p": {"operations": ["*"], "resources": ["*"]}}},
    )
    started = time.monotonic()
    reply = a.request("call", method=method, kwargs=kwargs)
    assert reply["error"] == "ServiceError"
    assert "not supported" in reply["message"]
    assert time.monotonic() - started < 5


def test_local_deployment_through_ipc_like_greengrass_cli(
    agent: AgentFactory, core: CoreThread
) -> None:
    agent("com.test.Target", configuration={"interval": 5})
    cli = agent("aws.greengrass.Cli.client", CLI_POLICY)
    created = cli(
        "call",
        method="create_local_deployment",
        kwargs={"component_to_configuration": {"com.test.Target": {"MERGE": {"interval": 1}}}},
    )
    deployment_id = created["response"]["deploymentId"]
    status = cli(
        "call", method="get_local_deployment_status", kwargs={"deployment_id": deployment_id}
    )["response"]["deployment"]
    assert status["status"] == "SUCCEEDED"
    assert core.get_config("com.test.Target")["interval"] == 1
    listed = cli("call", method="list_components", kwargs={})["response"]["components"]
    assert {c["componentName"] for c in listed} >= {"com.test.Target"}
    missing = cli.request(
        "call", method="get_local_deployment_status", kwargs={"deployment_id": "nope"}
    )
    assert missing["error"] == "ResourceNotFoundError"
