"""Logging setup: stdlib ``logging``, one JSON object per line.

Call sites log with a stable ``event`` key and lazy ``%s`` arguments::

    log.info("started %s", name, extra={"event": "runner.component.start", "component": name})

and get ``{"ts": ..., "level": "INFO", "logger": ..., "event": "runner.component.start",
"message": "started foo", "component": "foo"}``. Only entry points (CLIs, a component's
``main``) call :func:`configure`; importing this module changes nothing.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, TextIO

# Attributes every LogRecord has; anything else on a record came in through ``extra=``.
_RECORD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object: ts, level, logger, event, message, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "event": getattr(record, "event", None) or record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRS and key != "event" and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def _iso(created: float) -> str:
    ms = int((created % 1) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{ms:03d}Z"


def configure(
    level: int | str = logging.INFO,
    *,
    stream: TextIO | None = None,
    file: Path | None = None,
    stream_level: int | str | None = None,
) -> None:
    """Route the root logger to JSON lines on ``stream`` (default stdout) and optionally a file.

    ``stream_level`` raises the bar for the stream only (the file still gets ``level``).
    Replaces handlers previously installed by this function, so calling it twice is harmless.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_ggvision", False):
            root.removeHandler(handler)
            handler.close()
    formatter = JsonFormatter()
    handlers: list[logging.Handler] = [logging.StreamHandler(stream or sys.stdout)]
    if stream_level is not None:
        handlers[0].setLevel(stream_level)
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(file, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
        handler._ggvision = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)
