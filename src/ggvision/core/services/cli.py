"""greengrass-cli's operations (CreateLocalDeployment, GetLocalDeploymentStatus,
ListLocalDeployments, ListComponents), each authorized under ``aws.greengrass.Cli``.

A local deployment does not notify SubscribeToComponentUpdates subscribers, as on the Nucleus
(its ``DeploymentDocumentConverter`` gives local deployments ``SKIP_NOTIFY_COMPONENTS``)."""

from __future__ import annotations

from typing import Any, Protocol

from ggvision.core.configstore import ConfigStore
from ggvision.core.deployments import SKIP_NOTIFY, Deployments, DeployResult
from ggvision.core.services import Authorizer, Call, Operation, authorize, str_field
from ggvision.errors import IpcError

CLI = "aws.greengrass.Cli"
CREATE = "aws.greengrass#CreateLocalDeployment"
GET_STATUS = "aws.greengrass#GetLocalDeploymentStatus"
LIST_DEPLOYMENTS = "aws.greengrass#ListLocalDeployments"
LIST_COMPONENTS = "aws.greengrass#ListComponents"


class ComponentCatalog(Protocol):
    """What ListComponents tells of each component besides its configuration."""

    def version_of(self, name: str) -> str: ...

    def state_of(self, name: str) -> str | None: ...


def _deployment_view(result: DeployResult) -> dict[str, Any]:
    view: dict[str, Any] = {
        "deploymentId": result.deployment_id,
        "status": result.status,
        "createdOn": str(int(result.created_on * 1000)),
        "deploymentStatusDetails": {"detailedDeploymentStatus": result.status},
    }
    if result.message:
        view["deploymentStatusDetails"]["deploymentErrorStack"] = [result.message]
    return view


class CliAgent:
    def __init__(
        self,
        auth: Authorizer,
        deployments: Deployments,
        store: ConfigStore,
        catalog: ComponentCatalog,
    ) -> None:
        self.auth = auth
        self.deployments = deployments
        self.store = store
        self.catalog = catalog

    def operations(self) -> list[Operation]:
        return [
            Operation(CREATE, self.create_local_deployment),
            Operation(GET_STATUS, self.get_local_deployment_status),
            Operation(LIST_DEPLOYMENTS, self.list_local_deployments),
            Operation(LIST_COMPONENTS, self.list_components),
        ]

    def _authorize(self, call: Call, operation: str) -> None:
        authorize(self.auth, call.component, CLI, operation, "*")

    async def create_local_deployment(self, call: Call) -> dict[str, Any]:
        self._authorize(call, CREATE)
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
        result = await self.deployments.deploy(configuration, SKIP_NOTIFY)
        return {"deploymentId": result.deployment_id}

    def get_local_deployment_status(self, call: Call) -> dict[str, Any]:
        self._authorize(call, GET_STATUS)
        deployment_id = str_field(call, "deploymentId")
        result = self.deployments.history.get(deployment_id or "")
        if result is None:
            raise IpcError(
                "ResourceNotFoundError",
                "Cannot find deployment",
                resourceType="LocalDeployment",
                resourceName=deployment_id or "",
            )
        return {"deployment": _deployment_view(result)}

    def list_local_deployments(self, call: Call) -> dict[str, Any]:
        self._authorize(call, LIST_DEPLOYMENTS)
        return {
            "localDeployments": [_deployment_view(r) for r in self.deployments.history.values()]
        }

    def list_components(self, call: Call) -> dict[str, Any]:
        self._authorize(call, LIST_COMPONENTS)
        catalog = self.catalog
        return {
            "components": [
                {
                    "componentName": name,
                    "version": catalog.version_of(name),
                    "state": catalog.state_of(name) or "NEW",
                    "configuration": self.store.snapshot(name),
                }
                for name in self.store.components()
            ]
        }
