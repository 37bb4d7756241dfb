"""Component updates (SubscribeToComponentUpdates, DeferComponentUpdate, PreComponentUpdateEvent,
PostComponentUpdateEvent) through the real client, case by case against the Nucleus's own tests:
``LifecycleIPCEventStreamAgentTest`` (the agent), ``DeploymentConfigMergingTest`` and
``IPCServicesTest`` (the deployment flow, ``UpdateSystemPolicyService``) in
aws-greengrass/aws-greengrass-nucleus."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ggvision.core.deployments import SKIP_NOTIFY, DeployResult, UpdatePolicy
from ggvision.errors import AdminError
from ggvision.runner.admin_client import AdminClient
from ggvision.testing.agent import AgentProcess
from ggvision.testing.harness import CoreThread
from tests.conftest import AgentFactory
from tests.core.test_lifecycle import CLI_POLICY

TARGET = "com.test.Target"
NOT_SUBSCRIBED = "Component is not subscribed to component update events"
NO_DEPLOYMENT_ID = "Cannot defer the update, the deployment ID provided was null"
TIME_LIMIT = "Time limit to respond to PreComponentUpdateEvent exceeded"


def fast(timeout_s: float) -> UpdatePolicy:
    return UpdatePolicy("NOTIFY_COMPONENTS", timeout_s)


def defer(a: AgentProcess, deployment_id: str | None, recheck_ms: int = 1000) -> dict[str, Any]:
    return a.request(
        "call",
        method="defer_component_update",
        kwargs={
            "deployment_id": deployment_id,
            "message": "Test defer",
            "recheck_after_ms": recheck_ms,
        },
    )


def events(a: AgentProcess, sub: int, n: int, timeout: float = 10) -> list[dict[str, Any]]:
    """At least ``n`` events of ``sub`` (fewer only once ``timeout`` has passed)."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        got += a("events", sub=sub, n=n - len(got), timeout=deadline - time.monotonic())["events"]
    return got


class Background:
    """A deployment run on its own thread, so the test can act while it waits."""

    def __init__(self, core: CoreThread, update: dict[str, Any], policy: UpdatePolicy | None):
        self.result: DeployResult | None = None
        self.started = time.monotonic()
        self.elapsed = 0.0
        self._thread = threading.Thread(target=self._run, args=(core, update, policy))
        self._thread.start()

    def _run(self, core: CoreThread, update: dict[str, Any], policy: UpdatePolicy | None) -> None:
        self.result = core.deploy(update, policy, timeout=90)
        self.elapsed = time.monotonic() - self.started

    def join(self) -> DeployResult:
        self._thread.join(100)
        assert self.result is not None, "the deployment did not finish"
        return self.result


@pytest.fixture
def target(agent: AgentFactory) -> AgentProcess:
    return agent(TARGET, configuration={"interval": 5})


def merge(interval: int) -> dict[str, Any]:
    return {TARGET: {"MERGE": {"interval": interval}}}


# --- DeferComponentUpdate's checks -------------------------------------------------------------


def test_defer_without_subscribing_is_invalid(target: AgentProcess) -> None:
    # LifecycleIPCEventStreamAgentTest.testDeferComponentUpdateHandler_defer_without_subscribing
    reply = defer(target, "A")
    assert (reply["error"], reply["message"]) == ("InvalidArgumentsError", NOT_SUBSCRIBED)


def test_defer_without_a_deployment_id_is_invalid(target: AgentProcess) -> None:
    # LifecycleIPCEventStreamAgentTest.GIVEN_defer_request_without_deployment_id_THEN_fail
    target("subscribe_updates")
    reply = defer(target, None)
    assert (reply["error"], reply["message"]) == ("InvalidArgumentsError", NO_DEPLOYMENT_ID)


def test_defer_with_nothing_pending_is_a_service_error(target: AgentProcess) -> None:
    # LifecycleIPCEventStreamAgentTest
    #   .testUpdateStateHandler_subscribe_then_defer_when_future_no_longer_waiting
    target("subscribe_updates")
    reply = defer(target, "abc")
    assert (reply["error"], reply["message"]) == ("ServiceError", TIME_LIMIT)


def test_closing_the_subscription_ends_it(target: AgentProcess) -> None:
    # LifecycleIPCEventStreamAgentTest.testSubscribeToComponent_on_stream_closure
    sub = target("subscribe_updates")["sub"]
    assert defer(target, "abc")["error"] == "ServiceError"  # subscribed: past the first check
    target("close", sub=sub)
    reply = defer(target, "abc")
    assert (reply["error"], reply["message"]) == ("InvalidArgumentsError", NOT_SUBSCRIBED)


# --- the deployment flow -------------------------------------------------------------------------


def test_a_deferral_delays_the_update_and_the_core_asks_again(
    core: CoreThread, target: AgentProcess, agent: AgentFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # DeploymentConfigMergingTest
    #   .GIVEN_a_running_service_is_not_disruptable_WHEN_deployed_THEN_deployment_waits
    # (one deferral, then PreComponentUpdateEvent again, then the update and
    # PostComponentUpdateEvent with the same deploymentId); IPCServicesTest
    #   .GIVEN_LifeCycleEventStreamClient_WHEN_subscribe_to_component_update_THEN_service_
    #   receives_update_and_close_stream
    sub = target("subscribe_updates", answers=[1500, 1000], then=0)["sub"]
    other = agent("com.test.Other")
    other_sub = other("subscribe_updates")["sub"]  # answers 0 each time
    with caplog.at_level(logging.INFO, logger="ggvision.core"):
        result = core.deploy(merge(1), fast(10))
    assert result.status == "SUCCEEDED"
    assert core.get_config(TARGET)["interval"] == 1
    seen = events(target, sub, 7)
    pre = [e["pre"] for e in seen if "pre" in e]
    post = [e["post"] for e in seen if "post" in e]
    # The SDK's own model classes read the events: field names and shapes as on the Nucleus.
    assert pre == [{"deploymentId": result.deployment_id, "isGgcRestarting": False}] * 3
    assert post == [{"deploymentId": result.deployment_id}]
    assert [e["deferred"] for e in seen if "deferred" in e] == [1500, 1000, 0]
    others = events(other, other_sub, 7)
    assert sum("pre" in e for e in others) == 3  # every subscriber is asked each round
    assert [e["post"] for e in others if "post" in e] == [{"deploymentId": result.deployment_id}]
    order = [
        getattr(r, "event", None)
        for r in caplog.records
        if getattr(r, "event", "").startswith("deploy.")
    ]
    # waited the largest recheckAfterMs each round, then applied, never before
    assert order == [
        "deploy.update_deferred",
        "deploy.update_deferred",
        "deploy.update_scheduled",
        "deploy.done",
    ]
    deferred = [
        getattr(r, "recheck_after_ms", None)
        for r in caplog.records
        if getattr(r, "event", "") == "deploy.update_deferred"
    ]
    assert deferred == [1500, 1000]


def test_an_answer_after_the_time_limit_is_refused_and_the_update_goes_ahead(
    core: CoreThread, target: AgentProcess
) -> None:
    # UpdateSystemPolicyService: a round waits timeoutInSeconds at most, then the futures are
    # discarded (discardDeferComponentUpdateFutures): the late answer gets
    # LifecycleIPCEventStreamAgent's ServiceError, as in
    # testUpdateStateHandler_subscribe_then_defer_when_future_no_longer_waiting.
    sub = target("subscribe_updates", answers=[60_000], answer_after_s=2.0)["sub"]
    started = time.monotonic()
    result = core.deploy(merge(2), fast(0.5))
    elapsed = time.monotonic() - started
    assert result.status == "SUCCEEDED"
    assert core.get_config(TARGET)["interval"] == 2
    assert 0.5 <= elapsed < 30  # the 60 s deferral came too late to count
    seen = events(target, sub, 3)
    assert {"defer_error": "ServiceError", "message": TIME_LIMIT} in seen
    assert [e["post"] for e in seen if "post" in e] == [{"deploymentId": result.deployment_id}]


def test_a_subscriber_that_never_answers_holds_the_update_one_timeout_only(
    target: AgentProcess, core: CoreThread
) -> None:
    # UpdateSystemPolicyService.getTimeToReCheck: no answer within the timeout is no deferral.
    sub = target("subscribe_updates", answers=[], then=None)["sub"]
    started = time.monotonic()
    result = core.deploy(merge(3), fast(1.0))
    elapsed = time.monotonic() - started
    assert result.status == "SUCCEEDED"
    assert core.get_config(TARGET)["interval"] == 3
    assert 1.0 <= elapsed < 30
    seen = events(target, sub, 2)
    assert sum("pre" in e for e in seen) == 1  # asked once: no deferral, no second round
    assert [e["post"] for e in seen if "post" in e] == [{"deploymentId": result.deployment_id}]


def test_the_core_default_timeout_is_configurable() -> None:
    # ComponentUpdatePolicy's 60 s default, here an IpcCore argument; a deployment that names no
    # policy uses it.
    with (
        CoreThread(component_update_timeout_s=0.5) as core,
        AgentProcess(core.component_env(TARGET, configuration={"interval": 5})) as a,
    ):
        sub = a("subscribe_updates", answers=[], then=None)["sub"]
        started = time.monotonic()
        result = core.deploy(merge(4))
        assert result.status == "SUCCEEDED"
        assert 0.5 <= time.monotonic() - started < 30
        assert sum("pre" in e for e in events(a, sub, 2)) == 1


def test_skip_notify_components_sends_no_events(core: CoreThread, target: AgentProcess) -> None:
    # DeploymentConfigMergingTest
    #   .GIVEN_kernel_running_single_service_WHEN_deployment_with_skip_safety_check_config_
    #   THEN_merge_without_checking_safety
    sub = target("subscribe_updates", answers=[], then=None)["sub"]
    result = core.deploy(merge(6), SKIP_NOTIFY)
    assert result.status == "SUCCEEDED"
    assert core.get_config(TARGET)["interval"] == 6
    assert target("events", sub=sub, n=1, timeout=1.0)["events"] == []


def test_a_local_deployment_does_not_notify(
    core: CoreThread, target: AgentProcess, agent: AgentFactory
) -> None:
    # DeploymentDocumentConverter.convertFromLocalOverrideRequestAndRoot: local deployments get
    # ComponentUpdatePolicy(NO_OP_TIMEOUT, SKIP_NOTIFY_COMPONENTS) ("Local deployments don't
    # notify components before updates", IPC docs).
    sub = target("subscribe_updates", answers=[], then=None)["sub"]
    cli = agent("aws.greengrass.Cli.client", CLI_POLICY)
    created = cli(
        "call",
        method="create_local_deployment",
        kwargs={"component_to_configuration": merge(7)},
    )
    status = cli(
        "call",
        method="get_local_deployment_status",
        kwargs={"deployment_id": created["response"]["deploymentId"]},
    )["response"]["deployment"]
    assert status["status"] == "SUCCEEDED"
    assert core.get_config(TARGET)["interval"] == 7
    assert target("events", sub=sub, n=1, timeout=1.0)["events"] == []


def test_a_deferral_for_another_deployment_is_refused(
    core: CoreThread, target: AgentProcess
) -> None:
    # deferUpdateFuturesMap is keyed by (component, deploymentId): only the pending one answers.
    sub = target("subscribe_updates", answers=[None], then=0)["sub"]
    running = Background(core, merge(8), fast(3.0))
    assert "pre" in events(target, sub, 1)[0]
    reply = defer(target, "not-this-deployment")
    assert (reply["error"], reply["message"]) == ("ServiceError", TIME_LIMIT)
    assert running.join().status == "SUCCEEDED"


def test_deployments_run_one_at_a_time(core: CoreThread, target: AgentProcess) -> None:
    # The Nucleus processes one deployment at a time: the second is not notified before the
    # first is done.
    sub = target("subscribe_updates", answers=[1000], then=0)["sub"]
    first = Background(core, merge(9), fast(5.0))
    seen = events(target, sub, 1)
    assert "pre" in seen[0]
    second = Background(core, merge(10), fast(5.0))
    a, b = first.join(), second.join()
    assert (a.status, b.status) == ("SUCCEEDED", "SUCCEEDED")
    kinds = [
        ("pre" if "pre" in e else "post", (e.get("pre") or e.get("post"))["deploymentId"])
        for e in seen + events(target, sub, 8 - len(seen))
        if "pre" in e or "post" in e
    ]
    first_id, second_id = a.deployment_id, b.deployment_id
    assert kinds == [
        ("pre", first_id),
        ("pre", first_id),
        ("post", first_id),
        ("pre", second_id),
        ("post", second_id),
    ]
    assert core.get_config(TARGET)["interval"] == 10


# --- ggvision core deploy (the admin socket) -----------------------------------------------------


@pytest.fixture
def admin(core: CoreThread) -> Iterator[AdminClient]:
    yield AdminClient(core.admin_socket_path)


def test_core_deploy_takes_a_component_update_policy(
    core: CoreThread, target: AgentProcess, admin: AdminClient
) -> None:
    # CreateDeployment's deploymentPolicies.componentUpdatePolicy {action, timeoutInSeconds}
    sub = target("subscribe_updates", answers=[], then=None)["sub"]
    skipped = admin.deploy(merge(11), {"action": "SKIP_NOTIFY_COMPONENTS"})
    assert skipped.status == "SUCCEEDED"
    assert target("events", sub=sub, n=1, timeout=1.0)["events"] == []
    notified = admin.deploy(merge(12), {"timeoutInSeconds": 0.5})
    assert notified.status == "SUCCEEDED"
    seen = events(target, sub, 2)
    assert [e["pre"]["deploymentId"] for e in seen if "pre" in e] == [notified.deployment_id]
    assert [e["post"]["deploymentId"] for e in seen if "post" in e] == [notified.deployment_id]
    assert core.get_config(TARGET)["interval"] == 12
    for bad in ({"action": "NOTIFY"}, {"timeoutInSeconds": -1}, {"timeout": 5}):
        with pytest.raises(AdminError) as info:
            admin.deploy(merge(13), bad)
        assert "componentUpdatePolicy" in str(info.value)
    assert core.get_config(TARGET)["interval"] == 12
