"""Run an :class:`IpcCore` (and its admin socket) on a background thread: the test harness
shipped with the code.

Component authors use it to test their component against the real IPC protocol without a device::

    with CoreThread() as core:
        env = core.component_env("com.example.Mine", access_control={...})
        subprocess.run([...], env=env)   # the component uses GreengrassCoreIPCClientV2()
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

from ggvision.core import eventloop
from ggvision.core.admin import AdminServer
from ggvision.core.deployments import DeployResult, UpdatePolicy
from ggvision.core.environment import DEFAULT_REGION, DEFAULT_THING_NAME, nucleus_env
from ggvision.core.limits import NUCLEUS, Limits
from ggvision.core.server import IpcCore

T = TypeVar("T")


class CoreThread:
    """An IPC core on its own event loop thread, with thread-safe helpers."""

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        profile: str = NUCLEUS,
        **core_kwargs: Any,
    ) -> None:
        """``profile``: ``nucleus`` (default) or ``lite``: the core keeps to Greengrass nucleus
        lite's limits (:class:`ggvision.core.limits.LiteLimits`); ``core_kwargs`` go to
        :class:`~ggvision.core.server.IpcCore` (``limits`` wins over ``profile``)."""
        if profile != NUCLEUS and "limits" not in core_kwargs:
            core_kwargs["limits"] = Limits.for_profile(profile)
        self.profile = profile
        self._own_root = root is None
        short = "/tmp"  # noqa: S108 # short socket paths; mkdtemp: 0700 # nosec B108
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="ggv-", dir=short))
        self._core_kwargs = core_kwargs
        self._loop = eventloop.new_event_loop()  # the core's own loop (uvloop if installed)
        self._thread = threading.Thread(target=self._loop.run_forever, name="ipc-core", daemon=True)
        self.core: IpcCore | None = None
        self._admin: AdminServer | None = None

    @property
    def socket_path(self) -> Path:
        return self.root / "ipc.socket"

    @property
    def admin_socket_path(self) -> Path:
        return self.root / "admin.socket"

    def __enter__(self) -> CoreThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()
        self.core = self.run(self._start_core([]))

    async def _start_core(
        self, kept: list[tuple[str, str | None, dict[str, Any], dict[str, Any], str]]
    ) -> IpcCore:
        """A new core with ``kept`` components registered, then its admin socket."""
        core = IpcCore(self.socket_path, **self._core_kwargs)
        for name, token, cfg, defaults, version in kept:
            core.register_component(name, cfg, defaults=defaults, version=version, token=token)
        await core.start()
        self._admin = AdminServer(core, self.admin_socket_path)
        await self._admin.start()
        return core

    async def _stop_core(self, core: IpcCore) -> None:
        if self._admin is not None:
            await self._admin.stop()
            self._admin = None
        await core.stop()

    def restart(self, down_s: float = 0.0) -> None:
        """Stop the core and, ``down_s`` seconds later, start a new one on the same sockets with
        every registered component's token, configuration and version: running components see
        the core go away and come back, as after a Nucleus restart, and may reconnect with the
        token they hold."""
        old = self.ipc
        kept = self.call(
            lambda: [
                (
                    name,
                    old.token_of(name),
                    old.config.snapshot(name),
                    old.defaults_of(name),
                    old.versions.get(name, "0.0.0"),
                )
                for name in old.components()
            ]
        )
        self.run(self._stop_core(old))
        self.core = None
        time.sleep(down_s)
        self.core = self.run(self._start_core(kept))

    def stop(self) -> None:
        if self.core is not None:
            self.run(self._stop_core(self.core))
            self.core = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        if not self._loop.is_running():
            self._loop.close()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def call(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        async def _call() -> T:
            return fn()

        return self.run(_call(), timeout)

    @property
    def ipc(self) -> IpcCore:
        assert self.core is not None, "core not started"
        return self.core

    def register(
        self, name: str, configuration: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> str:
        return self.call(lambda: self.ipc.register_component(name, configuration, **kwargs))

    def component_env(
        self,
        name: str,
        access_control: Mapping[str, Any] | None = None,
        configuration: Mapping[str, Any] | None = None,
    ) -> dict[str, str]:
        """Register ``name`` and return a full environment for a component process."""
        cfg = dict(configuration or {})
        if access_control is not None:
            cfg["accessControl"] = dict(access_control)
        token = self.register(name, cfg)
        return nucleus_env(
            ipc_socket=self.socket_path,
            token=token,
            thing_name=DEFAULT_THING_NAME,
            region=DEFAULT_REGION,
            component_version="0.0.0",
        )

    def state_of(self, name: str) -> str | None:
        return self.call(lambda: self.ipc.state_of(name))

    def deploy(
        self,
        component_to_configuration: Mapping[str, Any],
        update_policy: UpdatePolicy | None = None,
        timeout: float = 60.0,
    ) -> DeployResult:
        """A deployment as the cloud makes one: update subscribers are notified first unless
        ``update_policy`` skips them (default: NOTIFY_COMPONENTS with the core's
        ``component_update_timeout_s``)."""
        return self.run(
            self.ipc.deploy_configuration(component_to_configuration, update_policy), timeout
        )

    def get_config(self, name: str) -> dict[str, Any]:
        return self.call(lambda: self.ipc.config.snapshot(name))


def pubsub_policy(
    publish: list[str] | None = None,
    subscribe: list[str] | None = None,
) -> dict[str, Any]:
    """Build an ``accessControl`` map granting publish/subscribe on the given topics."""
    policies: dict[str, Any] = {}
    if publish:
        policies["ggvision:pub:1"] = {
            "policyDescription": "publish",
            "operations": ["aws.greengrass#PublishToTopic"],
            "resources": list(publish),
        }
    if subscribe:
        policies["ggvision:sub:1"] = {
            "policyDescription": "subscribe",
            "operations": ["aws.greengrass#SubscribeToTopic"],
            "resources": list(subscribe),
        }
    return {"aws.greengrass.ipc.pubsub": policies} if policies else {}
