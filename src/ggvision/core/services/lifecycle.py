"""Lifecycle operations (``aws.greengrass.ipc.lifecycle``): UpdateState, DeferComponentUpdate and
SubscribeToComponentUpdates, each on behalf of the calling component itself."""

from __future__ import annotations

from typing import Any, Protocol

from ggvision.core.services import Call, Operation, Streaming, str_field
from ggvision.errors import IpcError

COMPONENT_UPDATES_EVENT = "aws.greengrass#ComponentUpdatePolicyEvents"


class ComponentStates(Protocol):
    """The components' lifecycle states, as a component reports its own."""

    def has_component(self, name: str) -> bool: ...

    def set_state(self, name: str, state: str, *, reported: bool = False) -> None: ...


class LifecycleAgent:
    def __init__(self, states: ComponentStates) -> None:
        self.states = states
        # component -> its last DeferComponentUpdate (deploymentId, message, recheckAfterMs).
        self.deferrals: dict[str, dict[str, Any]] = {}

    def operations(self) -> list[Operation]:
        return [
            Operation("aws.greengrass#UpdateState", self.update_state),
            Operation("aws.greengrass#DeferComponentUpdate", self.defer_component_update),
            Operation(
                "aws.greengrass#SubscribeToComponentUpdates",
                self.subscribe_to_component_updates,
                streaming=True,
                event_model=COMPONENT_UPDATES_EVENT,
            ),
        ]

    def update_state(self, call: Call) -> dict[str, Any]:
        state = str_field(call, "state")
        if state not in ("RUNNING", "ERRORED"):
            raise IpcError("InvalidArgumentsError", "state must be RUNNING or ERRORED")
        if not self.states.has_component(call.component):
            raise IpcError(
                "ResourceNotFoundError",
                f"Component {call.component} not found",
                resourceType="Component",
                resourceName=call.component,
            )
        self.states.set_state(call.component, state, reported=True)
        return {}

    def defer_component_update(self, call: Call) -> dict[str, Any]:
        deployment_id = str_field(call, "deploymentId")
        recheck = call.request.get("recheckAfterMs", 0)
        if not isinstance(recheck, int) or isinstance(recheck, bool) or recheck < 0:
            raise IpcError("InvalidArgumentsError", "recheckAfterMs must be a non-negative integer")
        self.deferrals[call.component] = {
            "deploymentId": deployment_id,
            "message": str_field(call, "message") or "",
            "recheckAfterMs": recheck,
        }
        return {}

    def subscribe_to_component_updates(self, call: Call) -> Streaming:
        # Config-only deployments of this core do not restart components, so no update events
        # are emitted; the stream stays open until the client closes it, as on a device between
        # deployments.
        return Streaming({}, None)
