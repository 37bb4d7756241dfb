"""The ``lite`` profile (``ggvision core run --profile lite``, ``CoreThread(profile="lite")``):
Greengrass nucleus lite's limits, each crossed by the real ``awsiotsdk`` client and answered the
way Lite answers it, and the same case passing under the default (Java Nucleus) profile. The
figures and the answers come from Lite's sources (see :class:`ggvision.core.limits.LiteLimits`).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ggvision.core.limits import LITE, NUCLEUS, Limits, LiteLimits, lite_json_bytes
from ggvision.errors import ConfigError
from ggvision.testing.agent import AgentError, AgentProcess
from ggvision.testing.harness import CoreThread, pubsub_policy

REPO = Path(__file__).resolve().parents[2]
LIMITS = LiteLimits()


@pytest.fixture(params=[LITE, NUCLEUS])
def profiled(request: pytest.FixtureRequest) -> Iterator[CoreThread]:
    with CoreThread(profile=request.param) as core:
        yield core


def agent(core: CoreThread, name: str, topics: list[str]) -> AgentProcess:
    return AgentProcess(core.component_env(name, pubsub_policy(publish=topics, subscribe=topics)))


def error_of(fn: Any, *args: Any, **kwargs: Any) -> AgentError | None:
    try:
        fn(*args, **kwargs)
    except AgentError as exc:
        return exc
    return None


def test_a_message_over_ten_thousand_bytes_closes_the_connection_on_lite_only(
    profiled: CoreThread,
) -> None:
    a = agent(profiled, "com.test.Big", ["big"])
    try:
        fits = base64.b64encode(b"x" * 7000).decode()  # ~9,500 bytes framed
        a("publish", topic="big", binary=fits)
        over = base64.b64encode(b"x" * 8000).decode()  # ~10,800 bytes framed
        err = error_of(a, "publish", topic="big", binary=over)
        if profiled.profile == LITE:
            assert err is not None, "Lite closes the connection"
            assert err.error != "ServiceError"  # no modeled answer: the socket is gone
            again = error_of(a, "publish", topic="big", binary=fits)
            assert again is not None, "the connection stays closed"
        else:
            assert err is None
    finally:
        a.close()


def test_a_topic_over_256_bytes_is_a_service_error_on_lite_only(profiled: CoreThread) -> None:
    ok, over = "t/" + "a" * 254, "t/" + "a" * 255
    a = agent(profiled, "com.test.Topics", ["t/*"])
    try:
        a("subscribe", topic=ok)
        a("publish", topic=ok, json={"n": 1})
        pub = error_of(a, "publish", topic=over, json={"n": 2})
        sub = error_of(a, "subscribe", topic=over)
        if profiled.profile == LITE:
            assert pub is not None and sub is not None
            assert (pub.error, pub.message) == ("ServiceError", "Failed to publish the message.")
            assert (sub.error, sub.message) == ("ServiceError", "Failed to bind subscription.")
        else:
            assert pub is None and sub is None
    finally:
        a.close()


def test_an_unauthorized_long_topic_is_unauthorized_first(profiled: CoreThread) -> None:
    a = agent(profiled, "com.test.NoGrant", ["mine"])
    try:
        err = error_of(a, "publish", topic="other/" + "a" * 300, json={})
        assert err is not None and err.error == "UnauthorizedError"
    finally:
        a.close()


def test_the_hundredth_local_subscription_is_refused_on_lite_only(profiled: CoreThread) -> None:
    a = agent(profiled, "com.test.Subs", ["s/*"])
    b = agent(profiled, "com.test.Subs2", ["s/*"])
    try:
        for i in range(60):
            a("subscribe", topic=f"s/{i}")
        for i in range(LIMITS.max_pubsub_subscriptions - 60):  # 99 in all, two components
            b("subscribe", topic=f"s/b{i}")
        err = error_of(b, "subscribe", topic="s/one-more")
        if profiled.profile == LITE:
            assert err is not None
            assert (err.error, err.message) == ("ServiceError", "Failed to bind subscription.")
            a.close()  # its 60 are released with its connection
            b("subscribe", topic="s/after-release")
        else:
            assert err is None
    finally:
        a.close()
        b.close()


def test_the_fifty_first_client_is_closed_on_lite_only(profiled: CoreThread) -> None:
    procs = []
    outs = []
    try:
        # Two components (one token holds at most 32 connections on either profile).
        for name, count in (("com.test.ClientsA", 26), ("com.test.ClientsB", 26)):
            env = profiled.component_env(name, {})
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.core.lite_clients", str(count)],
                env=env,
                cwd=REPO,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            procs.append(proc)
            assert proc.stdout is not None
            outs.append(json.loads(proc.stdout.readline()))
    finally:
        for proc in procs:
            proc.communicate(b"\n", timeout=60)
    if profiled.profile == LITE:
        assert outs[0] == {"connected": 26, "error": None}
        assert outs[1]["connected"] == LIMITS.max_clients - 26, outs
        assert outs[1]["error"] is not None
    else:
        assert [o["connected"] for o in outs] == [26, 26], outs


def test_an_operation_lite_does_not_serve_is_a_bare_service_error(profiled: CoreThread) -> None:
    a = agent(profiled, "com.test.Ops", [])
    try:
        err = error_of(a, "call", method="get_component_details", kwargs={"component_name": "x"})
        assert err is not None
        if profiled.profile == LITE:
            assert (err.error, err.message) == ("ServiceError", "")
        else:
            assert err.error != "ServiceError" or err.message != ""
    finally:
        a.close()


def test_a_request_json_over_lites_decode_arena_is_a_service_error(profiled: CoreThread) -> None:
    a = agent(profiled, "com.test.Json", ["j"])
    try:
        small = {f"k{i}": i for i in range(100)}
        a("publish", topic="j", json=small)
        wide = {f"k{i}": i for i in range(140)}  # 140 pairs: 2,940 arena bytes > 2,805
        err = error_of(a, "publish", topic="j", json=wide)
        if profiled.profile == LITE:
            assert err is not None
            assert (err.error, err.message) == ("ServiceError", "")
        else:
            assert err is None
    finally:
        a.close()


def test_lites_arena_arithmetic() -> None:
    # GG_MAX_OBJECT_SUBOBJECTS's rule (gg/object.h): a list takes len, a map 2 * len, plus
    # what they hold; objects are 11 bytes, key-value pairs 21 (64-bit).
    assert lite_json_bytes({}) == 0
    assert lite_json_bytes({"a": 1, "b": [1, 2, {"c": None}]}) == 2 * 21 + 3 * 11 + 21
    assert LIMITS.max_json_bytes == 255 * 11


def test_profiles_are_chosen_once_by_name() -> None:
    assert Limits().profile == NUCLEUS and Limits().lite is None
    lite = Limits.for_profile(LITE, connections_per_token=4)
    assert lite.lite == LiteLimits() and lite.connections_per_token == 4
    with pytest.raises(ConfigError) as info:
        Limits.for_profile("greengrass-v1")
    assert "unknown profile" in str(info.value)


def test_core_run_profile_lite_chooses_lites_limits() -> None:
    from ggvision.cli import build_parser
    from ggvision.cli._core_run import limits_of

    run = ["core", "run", "--recipe-dir", "r"]
    assert limits_of(build_parser().parse_args(run)).profile == NUCLEUS
    lite = limits_of(build_parser().parse_args([*run, "--profile", "lite"]))
    assert lite.profile == LITE and lite.lite == LiteLimits()
    with pytest.raises(SystemExit):
        build_parser().parse_args([*run, "--profile", "v1"])
