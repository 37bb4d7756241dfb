"""Security: least privilege on the bus (checked against the recipes, with the real client and
each component's own token), images only from the allowed directories, models only from the
store and never pickled, no shell, owner-only files."""

from __future__ import annotations

import ast
import base64
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ggvision.contract import ErrorCode, PathImage, RequestError
from ggvision.frames import FrameWriter
from ggvision.serving.images import ImageLoader
from ggvision.serving.models.store import Model, ModelError, resolve_model_dir
from ggvision.testing.agent import AgentError, AgentProcess
from ggvision.testing.harness import CoreThread

from .conftest import REPO, fake_store

PUBLISH, SUBSCRIBE = "aws.greengrass#PublishToTopic", "aws.greengrass#SubscribeToTopic"
COMPONENTS = ["com.custom.ImageClassifier", "com.custom.CameraSource", "com.custom.requester"]


def recipe_acl(name: str) -> dict[str, Any]:
    recipe = yaml.safe_load((REPO / "components" / name / "recipe.yaml").read_text())
    acl: dict[str, Any] = recipe["ComponentConfiguration"]["DefaultConfiguration"]["accessControl"]
    return acl


def owned(
    acl: dict[str, Any], operation: str, destination: str = "aws.greengrass.ipc.pubsub"
) -> set[str]:
    return {
        resource
        for policy in acl.get(destination, {}).values()
        if operation in policy["operations"]
        for resource in policy["resources"]
    }


MQTT = "aws.greengrass.ipc.mqttproxy"
IOT_PUBLISH, IOT_SUBSCRIBE = "aws.greengrass#PublishToIoTCore", "aws.greengrass#SubscribeToIoTCore"


def concrete(pattern: str) -> str:
    """An IoT Core topic a ``+`` pattern of a recipe grants (the thing name filled in)."""
    return pattern.replace("+", "cam-1")


def iot_owned(name: str, operation: str) -> set[str]:
    return {concrete(p) for p in owned(recipe_acl(name), operation, MQTT)}


# Every topic any recipe names, plus neighbours an over-broad match would let through.
TOPICS = sorted(
    {t for c in COMPONENTS for op in (PUBLISH, SUBSCRIBE) for t in owned(recipe_acl(c), op)}
    | {"local/other", "local/result/x", "local/inference/x", "local/status/someone.Else", "local"}
)


@pytest.fixture(scope="module")
def core() -> Iterator[CoreThread]:
    with CoreThread() as c:
        yield c


@pytest.fixture(scope="module", params=COMPONENTS)
def component(
    request: pytest.FixtureRequest, core: CoreThread
) -> Iterator[tuple[str, AgentProcess]]:
    """A real client holding the component's token, registered with its recipe's accessControl."""
    name: str = request.param
    agent = AgentProcess(core.component_env(name, recipe_acl(name)))
    yield name, agent
    agent.close()


def refused(reply: dict[str, Any]) -> bool:
    return not reply["ok"] and reply.get("error") == "UnauthorizedError"


def test_the_recipes_grant_something_to_check() -> None:
    for name in COMPONENTS:
        assert owned(recipe_acl(name), PUBLISH) and owned(recipe_acl(name), SUBSCRIBE), name


def test_pubsub_allowed_exactly_where_the_recipe_says(
    component: tuple[str, AgentProcess],
) -> None:
    name, agent = component
    acl = recipe_acl(name)
    for topic in TOPICS:
        pub = agent.request("publish", topic=topic, binary=base64.b64encode(b"{}").decode())
        assert pub["ok"] == (topic in owned(acl, PUBLISH)), (name, "publish", topic, pub)
        if not pub["ok"]:
            assert refused(pub), pub
        sub = agent.request("subscribe", topic=topic)
        assert sub["ok"] == (topic in owned(acl, SUBSCRIBE)), (name, "subscribe", topic, sub)
        if sub["ok"]:
            agent("close", sub=sub["sub"])
        else:
            assert refused(sub), sub


# Every IoT Core topic any recipe grants, plus neighbours; as concrete topics.
IOT_TOPICS = sorted(
    {t for c in COMPONENTS for op in (IOT_PUBLISH, IOT_SUBSCRIBE) for t in iot_owned(c, op)}
    | {"ggvision/results", "ggvision/cam-1/other", "ggvision/cam-1/results/x", "other/topic"}
)


def test_iot_core_allowed_exactly_where_the_recipe_says(
    component: tuple[str, AgentProcess],
) -> None:
    """Granted: not refused (the core has no broker here, so it may fail otherwise)."""
    name, agent = component
    for topic in IOT_TOPICS:
        pub = agent.request("publish_iot", topic=topic, payload="e30=")
        assert refused(pub) == (topic not in iot_owned(name, IOT_PUBLISH)), (name, topic, pub)
        sub = agent.request("subscribe_iot", topic=topic)
        assert refused(sub) == (topic not in iot_owned(name, IOT_SUBSCRIBE)), (name, topic, sub)
        if sub["ok"]:
            agent("close", sub=sub["sub"])


def test_some_component_is_granted_iot_core() -> None:
    assert any(iot_owned(c, IOT_PUBLISH) for c in COMPONENTS)


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("create_local_deployment", {"component_to_configuration": {}}),
        ("list_local_deployments", {}),
        ("list_components", {}),
    ],
)
def test_operations_no_recipe_grants_are_refused(
    component: tuple[str, AgentProcess], method: str, kwargs: dict[str, Any]
) -> None:
    _, agent = component
    assert not any("aws.greengrass.Cli" in d for d in recipe_acl(component[0]))
    reply = agent.request("call", method=method, kwargs=kwargs)
    assert refused(reply), reply


def test_a_component_cannot_change_another_components_configuration(
    component: tuple[str, AgentProcess], core: CoreThread
) -> None:
    """UpdateConfiguration has no component name: a write lands in the caller's own config."""
    name, agent = component
    others = [c for c in COMPONENTS if c != name]
    before = {c: core.get_config(c) for c in others}
    agent(
        "call",
        method="update_configuration",
        kwargs={"key_path": [], "value_to_merge": {"queueSize": 1}, "timestamp": 4e9},
    )
    assert {c: core.get_config(c) for c in others} == before
    assert core.get_config(name)["queueSize"] == 1


def test_an_unregistered_token_is_refused(core: CoreThread) -> None:
    env = core.component_env("com.test.Real", {})
    env["SVCUID"] = "forged-" + env["SVCUID"]
    with pytest.raises(AgentError) as info:
        AgentProcess(env, timeout=10)
    assert "Unauthorized" in str(info.value) or "Access" in str(info.value), info.value


# --- images: only from the allowed directories ---
def test_images_only_from_allowed_directories_by_realpath(tmp_path: Path) -> None:
    allowed, outside = tmp_path / "allowed", tmp_path / "allowed-not"  # a shared name prefix
    allowed.mkdir()
    outside.mkdir()
    (outside / "x.jpg").write_bytes(b"secret")
    (allowed / "inside.jpg").write_bytes(b"fine")
    (allowed / "link-in.jpg").symlink_to(allowed / "inside.jpg")
    (allowed / "link-out.jpg").symlink_to(outside / "x.jpg")
    (allowed / "sub").symlink_to(outside, target_is_directory=True)
    loader = ImageLoader([str(allowed)], max_bytes=1 << 20, max_pixels=1 << 20)
    assert loader._read_path(str(allowed / "inside.jpg")) == b"fine"
    assert loader._read_path(str(allowed / "link-in.jpg")) == b"fine"
    for path in (
        outside / "x.jpg",
        allowed / "link-out.jpg",
        allowed / "sub" / "x.jpg",
        allowed / ".." / "allowed-not" / "x.jpg",
    ):
        with pytest.raises(RequestError) as info:
            loader.load(PathImage(path=str(path)))
        assert info.value.code == ErrorCode.PATH_NOT_ALLOWED, path


def test_no_allowed_directories_means_no_paths(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"x")
    loader = ImageLoader([], max_bytes=1 << 20, max_pixels=1 << 20)
    with pytest.raises(RequestError) as info:
        loader.load(PathImage(path=str(tmp_path / "a.jpg")))
    assert info.value.code == ErrorCode.PATH_NOT_ALLOWED


# --- models: only from the store, only non-pickle formats ---
def test_model_keys_cannot_leave_the_store(tmp_path: Path) -> None:
    store = fake_store(tmp_path / "store")
    assert resolve_model_dir(store, "fake") == (store / "fake").resolve()
    (store / "escape").symlink_to(tmp_path, target_is_directory=True)
    for key in ("../fake", "..", "/etc", ".hidden", "a/b", ""):
        with pytest.raises(ModelError):
            resolve_model_dir(store, key)


@pytest.mark.parametrize(
    "change",
    [
        {"format": "pickle"},
        {"format": "pytorch"},
        {"format": "keras"},
        {"file": "../../outside.tflite"},
        {"file": "/etc/passwd"},
    ],
)
def test_manifests_naming_other_formats_or_files_outside_are_refused(
    tmp_path: Path, change: dict[str, str]
) -> None:
    store = fake_store(tmp_path / "store")
    (tmp_path / "outside.tflite").write_bytes(b"x")
    manifest = store / "fake" / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), **change}))
    with pytest.raises(ModelError):
        Model.load(store / "fake")


def _calls(paths: list[Path]) -> Iterator[tuple[Path, ast.Call]]:
    for root in paths:
        for py in sorted(root.rglob("*.py")):
            for node in ast.walk(ast.parse(py.read_text(encoding="utf-8"), str(py))):
                if isinstance(node, ast.Call):
                    yield py, node


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return f"{_name(func.value)}.{func.attr}"
    return func.id if isinstance(func, ast.Name) else "?"


SHIPPED = [REPO / "src", *(REPO / "components").glob("*/src")]


def test_no_shell_and_no_unpickling_in_shipped_code() -> None:
    bad = []
    for py, call in _calls([*SHIPPED, REPO / "tools", REPO / "bench"]):
        name = _name(call.func)
        shell = any(
            k.arg == "shell" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
            for k in call.keywords
        )
        if shell or name in {"os.system", "os.popen", "eval", "exec"}:
            bad.append(f"{py.relative_to(REPO)}:{call.lineno} {name}")
    for py, call in _calls(SHIPPED):
        name = _name(call.func)
        if name in {"pickle.load", "pickle.loads", "torch.load", "joblib.load"} or (
            name.endswith(".load") and any(k.arg == "allow_pickle" for k in call.keywords)
        ):
            bad.append(f"{py.relative_to(REPO)}:{call.lineno} {name}")
    assert bad == []


# --- files: owner only ---
def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_core_sockets_and_root_are_owner_only(core: CoreThread) -> None:
    assert stat.S_ISSOCK(core.socket_path.lstat().st_mode)
    assert mode(core.socket_path) == 0o600
    assert mode(core.root / "admin.socket") == 0o600
    assert mode(core.root) == 0o700


def test_no_file_under_the_core_root_holds_a_token(core: CoreThread) -> None:
    token = core.component_env("com.test.Secretive", {})["SVCUID"]
    for path in core.root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert token.encode() not in path.read_bytes(), path


def test_frame_rings_are_owner_only(tmp_path: Path) -> None:
    writer = FrameWriter("ring", slots=1, slot_bytes=12, directory=tmp_path)
    try:
        assert mode(tmp_path / "ring") == 0o600
    finally:
        writer.unlink()


def test_the_runner_root_is_made_owner_only_even_if_it_existed(tmp_path: Path) -> None:
    from ggvision.runner.layout import Layout

    root = tmp_path / "root"
    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)
    layout = Layout.at(root)
    layout.create()
    assert mode(root) == 0o700
    assert all(mode(root / sub) == 0o700 for sub in ("work", "logs", "packages/artifacts"))


def test_a_restarted_core_reissues_a_token_only_to_its_own_component(tmp_path: Path) -> None:
    from ggvision.core.server import IpcCore
    from ggvision.errors import GgvisionError

    core = IpcCore(tmp_path / "ipc.socket")
    mine = core.register_component("com.test.A", {}, token="kept-token")
    assert mine == "kept-token"
    assert core.component_for_token("kept-token") == "com.test.A"
    assert core.register_component("com.test.A", {}) == "kept-token"  # stable per name
    with pytest.raises(GgvisionError):
        core.register_component("com.test.B", {}, token="kept-token")  # someone else's
    with pytest.raises(GgvisionError):
        core.register_component("com.test.A", {}, token="another")  # not its own
    assert core.component_for_token("another") is None
    assert "com.test.B" not in core.components()
