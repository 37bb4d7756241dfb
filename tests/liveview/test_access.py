"""The live view's recipe grants subscribe only, exactly on the topics it shows: checked with the
real client holding the component's token on the local core."""

from __future__ import annotations

import base64

from ggvision.testing.agent import AgentProcess
from ggvision.testing.harness import CoreThread
from tests.liveview.conftest import NAME, recipe_defaults

SHOWN = {
    "local/inference",
    "local/detect",
    "local/result",
    "local/status/com.custom.CameraSource",
    "local/status/com.custom.ImageClassifier",
    "local/status/com.custom.ObjectDetector",
}
NEIGHBOURS = {"local/result/x", "local/status/someone.Else", "local/other", "local", "local/#"}


def test_subscribe_only_exactly_on_the_topics_it_shows(core: CoreThread) -> None:
    acl = recipe_defaults()["accessControl"]
    agent = AgentProcess(core.component_env(NAME, acl))
    try:
        for topic in sorted(SHOWN | NEIGHBOURS):
            sub = agent.request("subscribe", topic=topic)
            assert sub["ok"] == (topic in SHOWN), (topic, sub)
            if sub["ok"]:
                agent("close", sub=sub["sub"])
            else:
                assert sub.get("error") == "UnauthorizedError", sub
            pub = agent.request("publish", topic=topic, binary=base64.b64encode(b"{}").decode())
            assert not pub["ok"] and pub.get("error") == "UnauthorizedError", (topic, pub)
        assert set(acl) == {"aws.greengrass.ipc.pubsub"}  # no IoT Core, no other service
    finally:
        agent.close()
