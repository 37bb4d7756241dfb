"""Lifecycle operations (``aws.greengrass.ipc.lifecycle``): UpdateState, SubscribeToComponentUpdates
and DeferComponentUpdate, each on behalf of the calling component itself.

Component updates work as the Nucleus's ``LifecycleIPCEventStreamAgent`` does them: a
SubscribeToComponentUpdates stream makes its component a listener; a deployment that notifies
components (:class:`ggvision.core.deployments.Deployments`, the Nucleus's
``UpdateSystemPolicyService``) calls :meth:`LifecycleAgent.send_pre_update`, which sends
``{"preUpdateEvent": {"deploymentId", "isGgcRestarting"}}`` on every listener's stream and
returns one future per stream, completed by that component's DeferComponentUpdate; afterwards
:meth:`LifecycleAgent.send_post_update` sends ``{"postUpdateEvent": {"deploymentId"}}``.

DeferComponentUpdate is refused as on the Nucleus: ``InvalidArgumentsError`` when the caller has
no open SubscribeToComponentUpdates stream or gives no ``deploymentId``; ``ServiceError`` when
no PreComponentUpdateEvent of that deployment waits for its answer (never sent, already
answered, or the wait is over). Only the latest future per (component, deployment) is kept, as
on the Nucleus: a component with two streams completes only the one sent last.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from ggvision.core.rpc import Stream
from ggvision.core.services import Call, Operation, Streaming, str_field
from ggvision.errors import IpcError

log = logging.getLogger(__name__)

COMPONENT_UPDATES_EVENT = "aws.greengrass#ComponentUpdatePolicyEvents"


class ComponentStates(Protocol):
    """The components' lifecycle states, as a component reports its own."""

    def has_component(self, name: str) -> bool: ...

    def set_state(self, name: str, state: str, *, reported: bool = False) -> None: ...


@dataclass(frozen=True, slots=True)
class Deferral:
    """One DeferComponentUpdate answer to a PreComponentUpdateEvent."""

    component: str
    deployment_id: str
    message: str
    recheck_after_ms: int | None  # None: the request had none (the Nucleus ignores the answer)


class LifecycleAgent:
    def __init__(self, states: ComponentStates) -> None:
        self.states = states
        # component -> its open SubscribeToComponentUpdates streams
        self._listeners: dict[str, list[Stream]] = {}
        # (component, deploymentId) -> the future its DeferComponentUpdate completes (latest only)
        self._waiting: dict[tuple[str, str], asyncio.Future[Deferral]] = {}

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

    # --- component updates -------------------------------------------------------------------
    def subscribe_to_component_updates(self, call: Call) -> Streaming:
        component, stream = call.component, call.stream
        if not self.states.has_component(component):
            raise IpcError(
                "ResourceNotFoundError",
                "Component with given name not found currently in Greengrass",
                resourceType="Component",
                resourceName=component,
            )

        def register() -> None:
            if stream.is_open:
                self._listeners.setdefault(component, []).append(stream)
                stream.on_close(lambda: self._forget(component, stream))

        return Streaming({}, register)

    def _forget(self, component: str, stream: Stream) -> None:
        streams = self._listeners.get(component)
        if streams and stream in streams:
            streams.remove(stream)
            if not streams:
                del self._listeners[component]

    def defer_component_update(self, call: Call) -> dict[str, Any]:
        # The Nucleus's checks, in its order (LifecycleIPCEventStreamAgent.deferComponentUpdate).
        component = call.component
        if component not in self._listeners:
            raise IpcError(
                "InvalidArgumentsError", "Component is not subscribed to component update events"
            )
        deployment_id = str_field(call, "deploymentId")
        if deployment_id is None:
            raise IpcError(
                "InvalidArgumentsError",
                "Cannot defer the update, the deployment ID provided was null",
            )
        recheck = call.request.get("recheckAfterMs")
        if recheck is not None and (not isinstance(recheck, int) or isinstance(recheck, bool)):
            raise IpcError("InvalidArgumentsError", "recheckAfterMs must be an integer")
        waiting = self._waiting.pop((component, deployment_id), None)
        if waiting is None or waiting.done():
            raise IpcError(
                "ServiceError", "Time limit to respond to PreComponentUpdateEvent exceeded"
            )
        message = str_field(call, "message") or ""
        log.info(
            "%s answered the update of deployment %s: recheck after %s ms %s",
            component,
            deployment_id,
            recheck,
            message,
            extra={"event": "lifecycle.deferral", "component": component},
        )
        waiting.set_result(Deferral(component, deployment_id, message, recheck))
        return {}

    def subscribers(self) -> list[str]:
        """The components with an open SubscribeToComponentUpdates stream."""
        return list(self._listeners)

    def send_pre_update(
        self, deployment_id: str, is_ggc_restarting: bool = False
    ) -> list[asyncio.Future[Deferral]]:
        """Send PreComponentUpdateEvent on every listener's stream; one future per stream sent
        on, completed by its component's DeferComponentUpdate (earlier futures are discarded)."""
        self.discard()
        loop = asyncio.get_running_loop()
        payload = json.dumps(
            {
                "preUpdateEvent": {
                    "deploymentId": deployment_id,
                    "isGgcRestarting": is_ggc_restarting,
                }
            }
        ).encode()
        futures: list[asyncio.Future[Deferral]] = []
        for component, streams in list(self._listeners.items()):
            for stream in list(streams):
                if not stream.is_open:
                    continue
                fut: asyncio.Future[Deferral] = loop.create_future()
                # stored before sending, so that an answer however quick finds it
                self._waiting[(component, deployment_id)] = fut
                stream.send_event_bytes(COMPONENT_UPDATES_EVENT, payload)
                futures.append(fut)
        return futures

    def send_post_update(self, deployment_id: str) -> None:
        """Send PostComponentUpdateEvent on every listener's stream."""
        payload = json.dumps({"postUpdateEvent": {"deploymentId": deployment_id}}).encode()
        for streams in list(self._listeners.values()):
            for stream in list(streams):
                stream.send_event_bytes(COMPONENT_UPDATES_EVENT, payload)

    def discard(self) -> None:
        """Stop waiting for answers: a DeferComponentUpdate from now on gets ServiceError."""
        for fut in self._waiting.values():
            fut.cancel()
        self._waiting.clear()
