"""Composition root of com.custom.LiveView: read the config, build the state, the renderer, the
metrics and the HTTP server, subscribe to what the page shows.

Run by the recipe as ``python -m ggvision_liveview`` (or the ``ggvision-liveview`` script).
It subscribes to the inference topic (the frame references), the result topic and the status
topics, and publishes nothing. A deployment's configuration is validated (accept/reject); it
applies at the next start (the address, token and topics are the server's identity).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ggvision.bus import Bus, Subscription
from ggvision.component import command_line, run_component
from ggvision.errors import ConfigError
from ggvision_liveview.config import LiveViewConfig
from ggvision_liveview.metrics import Metrics
from ggvision_liveview.render import Renderer
from ggvision_liveview.server import LiveServer
from ggvision_liveview.state import LiveState

log = logging.getLogger("ggvision_liveview")

NAME = "com.custom.LiveView"


class LiveViewService:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        cfg = self.cfg = LiveViewConfig.from_raw(bus.get_configuration())
        self.metrics = Metrics()
        self.state = LiveState(
            stale_after_s=cfg.stale_after_seconds,
            max_cameras=cfg.max_cameras,
            on_result=self.metrics.observe,
        )
        self.metrics.watch(self.state)
        self.renderer = Renderer(Path(cfg.frame_directory), quality=cfg.jpeg_quality)
        self.server = LiveServer(
            self.state,
            self.renderer,
            self.metrics,
            host=cfg.host,
            port=cfg.port,
            token=cfg.token,
            max_viewers=cfg.max_viewers,
        )
        self._subs: list[Subscription] = []

    def start(self) -> None:
        """Listen first (a taken port is a start error: LiveViewError), then subscribe."""
        self.server.start()
        cfg, state = self.cfg, self.state
        # The handlers only decode, keep a few fields and wake the viewers: on the IPC thread.
        self._subs = [
            self.bus.subscribe(cfg.inference_topic, state.on_request, inline=True),
            self.bus.subscribe(cfg.result_topic, state.on_result, inline=True),
            *(self.bus.subscribe(t, state.on_status, inline=True) for t in cfg.status_topics),
            self.bus.subscribe_validation(self.validate),
        ]
        self.bus.update_state("RUNNING")
        log.info(
            "live view on %s",
            self.server.url,
            extra={"event": "liveview.listening", "url": self.server.url},
        )

    def stop(self) -> None:
        for sub in self._subs:
            try:
                sub.close()
            except Exception:
                log.debug("closing a subscription failed", exc_info=True)
        self.server.stop()
        self.renderer.close()

    def validate(self, proposed: dict[str, Any]) -> tuple[bool, str]:
        try:
            LiveViewConfig.from_raw(proposed)
        except ConfigError as exc:
            return False, str(exc)
        return True, ""


def main(argv: list[str] | None = None) -> int:
    return run_component(
        "liveview",
        lambda bus, _args: LiveViewService(bus),
        argv,
        parser=command_line("ggvision-liveview", __doc__),
        logger=log,
    )
