"""Lifecycle operations (UpdateState, DeferComponentUpdate, SubscribeToComponentUpdates) and the
local-deployment operations that ``greengrass-cli`` uses (CreateLocalDeployment and friends)."""

from __future__ import annotations

from typing import Any

from ggvision.core.services import Call, Operation, Streaming, str_field
from ggvision.errors import IpcError

COMPONENT_UPDATES_EVENT = "aws.greengrass#ComponentUpdatePolicyEvents"
CLI = "aws.greengrass.Cli"


def update_state(call: Call) -> dict[str, Any]:
    state = str_field(call, "state")
    if state not in ("RUNNING", "ERRORED"):
        raise IpcError("InvalidArgumentsError", "state must be RUNNING or ERRORED")
    if not call.core.config.has_component(call.component):
        raise IpcError(
            "ResourceNotFoundError",
            f"Component {call.component} not found",
            resourceType="Component",
            resourceName=call.component,
        )
    call.core.set_state(call.component, state, reported=True)
    return {}


def defer_component_update(call: Call) -> dict[str, Any]:
    deployment_id = str_field(call, "deploymentId")
    recheck = call.request.get("recheckAfterMs", 0)
    if not isinstance(recheck, int) or isinstance(recheck, bool) or recheck < 0:
        raise IpcError("InvalidArgumentsError", "recheckAfterMs must be a non-negative integer")
    call.core.deferrals[call.component] = {
        "deploymentId": deployment_id,
        "message": str_field(call, "message") or "",
        "recheckAfterMs": recheck,
    }
    return {}


def subscribe_to_component_updates(call: Call) -> Streaming:
    # Config-only deployments of this core do not restart components, so no update events are
    # emitted; the stream stays open until the client closes it, as on a device between deployments.
    return Streaming({}, None)


# --- greengrass-cli's operations (authorized under aws.greengrass.Cli) --------------------------
def _authorize_cli(call: Call, operation: str) -> None:
    call.core.authorize(call.component, CLI, operation, "*")


async def create_local_deployment(call: Call) -> dict[str, Any]:
    _authorize_cli(call, "aws.greengrass#CreateLocalDeployment")
    req = call.request
    for unsupported in (
        "rootComponentVersionsToAdd",
        "rootComponentsToRemove",
        "recipeDirectoryPath",
        "artifactsDirectoryPath",
    ):
        if req.get(unsupported):
            raise IpcError(
                "InvalidArgumentsError",
                f"{unsupported} is not supported by this local core: restart "
                "`ggvision core run` to change the component set",
            )
    configuration = req.get("componentToConfiguration") or {}
    if not isinstance(configuration, dict):
        raise IpcError("InvalidArgumentsError", "componentToConfiguration must be a map")
    result = await call.core.deployments.deploy(configuration)
    return {"deploymentId": result.deployment_id}


def _deployment_view(result: Any) -> dict[str, Any]:
    view: dict[str, Any] = {
        "deploymentId": result.deployment_id,
        "status": result.status,
        "createdOn": str(int(result.created_on * 1000)),
        "deploymentStatusDetails": {"detailedDeploymentStatus": result.status},
    }
    if result.message:
        view["deploymentStatusDetails"]["deploymentErrorStack"] = [result.message]
    return view


def get_local_deployment_status(call: Call) -> dict[str, Any]:
    _authorize_cli(call, "aws.greengrass#GetLocalDeploymentStatus")
    deployment_id = str_field(call, "deploymentId")
    result = call.core.deployments.history.get(deployment_id or "")
    if result is None:
        raise IpcError(
            "ResourceNotFoundError",
            "Cannot find deployment",
            resourceType="LocalDeployment",
            resourceName=deployment_id or "",
        )
    return {"deployment": _deployment_view(result)}


def list_local_deployments(call: Call) -> dict[str, Any]:
    _authorize_cli(call, "aws.greengrass#ListLocalDeployments")
    return {
        "localDeployments": [_deployment_view(r) for r in call.core.deployments.history.values()]
    }


def list_components(call: Call) -> dict[str, Any]:
    _authorize_cli(call, "aws.greengrass#ListComponents")
    core = call.core
    return {
        "components": [
            {
                "componentName": name,
                "version": core.versions.get(name, "0.0.0"),
                "state": core.state_of(name) or "NEW",
                "configuration": core.config.snapshot(name),
            }
            for name in core.config.components()
        ]
    }


OPERATIONS = [
    Operation("aws.greengrass#UpdateState", update_state),
    Operation("aws.greengrass#DeferComponentUpdate", defer_component_update),
    Operation(
        "aws.greengrass#SubscribeToComponentUpdates",
        subscribe_to_component_updates,
        streaming=True,
        event_model=COMPONENT_UPDATES_EVENT,
    ),
    Operation("aws.greengrass#CreateLocalDeployment", create_local_deployment),
    Operation("aws.greengrass#GetLocalDeploymentStatus", get_local_deployment_status),
    Operation("aws.greengrass#ListLocalDeployments", list_local_deployments),
    Operation("aws.greengrass#ListComponents", list_components),
]
