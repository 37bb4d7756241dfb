"""Composition root of com.custom.requester: read config, build the bus, feed, outputs and loop.

As a component (the recipe runs ``python -m ggvision_requester``) it reads its configuration over
IPC, follows deployment updates, and with ``repeat: 0`` runs until stopped. For people::

    ggvision-requester [--once] IMAGES_OR_DIR... [--jsonl F] [--csv F] [--annotate DIR]
                       [--timeout S] [--retries N]

does one pass over the given files and folders (flags override the configuration) and prints a
table. It still talks IPC, so run it as a component, e.g. ``ggvision core exec --recipe
components/com.custom.requester/recipe.yaml -- ggvision-requester --once photos/``.

Exit status: 0 when every request got an answer (error answers included), 1 when some timed out
after every retry, 2 when it cannot start (configuration, images, outputs, IPC), 3 on a bug.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from pathlib import Path
from typing import Any

from ggvision.bus import Bus, Subscription
from ggvision.component import command_line, run_component
from ggvision.errors import ConfigError, GgvisionError
from ggvision.stats import percentiles
from ggvision.telemetry import Health, RateMeter, StatusReporter
from ggvision_requester.config import RequesterConfig
from ggvision_requester.engine import Requester
from ggvision_requester.images import Feed, ImageListError, scan
from ggvision_requester.output import Recorder, print_table
from ggvision_requester.stats import Summary

log = logging.getLogger("ggvision_requester")

COMPONENT = "com.custom.requester"
EXIT_OK, EXIT_TIMEOUTS, EXIT_INTERNAL = 0, 1, 3  # 2: cannot start (ggvision.component)


class RequesterService:
    """Owns the live configuration and one run; reacts to deployments while it runs."""

    def __init__(
        self, bus: Bus, cfg: RequesterConfig, *, keep: bool = False, follow_deployments: bool = True
    ) -> None:
        self.bus = bus
        self.cfg = cfg
        self._follow = follow_deployments
        self._reload_lock = threading.Lock()
        self.feed = Feed(lambda: self.cfg)
        if cfg.repeat != 0:
            self.feed.check()  # a finite run with nothing to send is a configuration error
        elif not scan(cfg):
            log.warning(
                "no images yet; scanning again every second", extra={"event": "requester.no_images"}
            )
        self.recorder = Recorder(
            cfg.output_jsonl,
            cfg.output_csv,
            annotate_directory=lambda: self.cfg.annotate_directory,
            keep=keep,
        )
        self.requester = Requester(bus, lambda: self.cfg, self.feed, self.recorder.record)
        self._subs: list[Subscription] = []

    def _health(self) -> Health:
        """The running counts as a status report (the summary comes at the end of the run)."""
        tally = self.requester.tally
        p50, p95 = percentiles(tally.latencies.copy())  # one C-level copy: atomic under the GIL
        return Health(
            fps=self._rate.rate(tally.count),
            latency_p50_ms=p50,
            latency_p95_ms=p95,
            queue_depth=self.requester.in_flight,
            dropped=self.requester.dropped,
            errors={
                **dict(tally.errors),
                **({"TIMEOUT": tally.timeouts} if tally.timeouts else {}),
            },
            extra={"run_id": self.requester.run_id, "count": tally.count, "ok": tally.ok},
        )

    def run(self) -> Summary:
        self._rate = RateMeter()
        reporter = StatusReporter(
            self.bus,
            COMPONENT,
            self._health,
            interval_s=self.cfg.status_interval_seconds,
            topic=self.cfg.status_topic,
        )
        reporter.start()
        try:
            # on_message validates and queues (put_nowait): safe on the IPC thread
            self._subs.append(
                self.bus.subscribe(self.cfg.result_topic, self.requester.on_message, inline=True)
            )
            if self._follow:
                self._subs.append(self.bus.subscribe_validation(self.validate))
                self._subs.append(self.bus.subscribe_configuration(self.on_configuration_changed))
            summary = self.requester.run()
        finally:
            for sub in self._subs:
                try:
                    sub.close()
                except Exception:
                    log.debug("closing a subscription failed", exc_info=True)
            self.recorder.close()
            reporter.stop(final=False)
        self.publish_summary(summary)
        return summary

    def stop(self) -> None:
        self.requester.stop()

    def publish_summary(self, summary: Summary, timeout_s: float = 5.0) -> None:
        message = {
            "component": COMPONENT,
            "type": "summary",
            "run_id": self.requester.run_id,
            **summary.to_json(),
        }
        try:
            self.bus.publish_json(self.cfg.status_topic, message).result(timeout_s)
        except Exception as exc:  # boundary: the summary is also in the log
            log.error(
                "could not publish the summary on %s: %s",
                self.cfg.status_topic,
                exc,
                extra={"event": "requester.summary_publish_failed"},
            )

    # --- deployments ---------------------------------------------------------------------------
    def validate(self, proposed: dict[str, Any]) -> tuple[bool, str]:
        """Accept a deployment only if its configuration is valid and its folder can be listed."""
        try:
            scan(RequesterConfig.from_raw(proposed))
        except (ConfigError, ImageListError) as exc:
            return False, str(exc)
        return True, ""

    def on_configuration_changed(self, key_path: list[str]) -> None:
        # Runs on the SDK's thread: fetch the new configuration elsewhere.
        threading.Thread(target=self.reload, name="requester-reload", daemon=True).start()

    def reload(self) -> None:
        with self._reload_lock:
            try:
                new = RequesterConfig.from_raw(self.bus.get_configuration())
            except GgvisionError as exc:
                log.error(
                    "new configuration rejected: %s",
                    exc,
                    extra={"event": "requester.config_rejected"},
                )
                return
            fixed = new.restart_fields_changed(self.cfg)
            if fixed:
                log.warning(
                    "%s change only after a restart",
                    ", ".join(fixed),
                    extra={"event": "requester.restart_needed", "fields": fixed},
                )
                new = new.model_copy(update={k: getattr(self.cfg, k) for k in fixed})
            if new != self.cfg:
                self.cfg = new  # one reference swap: the loop reads it at its next step
                log.info("configuration updated", extra={"event": "requester.config_updated"})


# --- the component's lifetime -----------------------------------------------------------------
class RequesterRun:
    """One :meth:`RequesterService.run` on its own thread, so that the main thread waits for
    signals (:func:`ggvision.component.run_component`); a person's run ends with the table."""

    def __init__(self, service: RequesterService, human: bool) -> None:
        self.service = service
        self.human = human
        self.finished = threading.Event()
        self._code = EXIT_INTERNAL
        self._thread = threading.Thread(target=self._run, name="requester-run")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.service.stop()
        self._thread.join()

    def exit_code(self) -> int:
        return self._code

    def _run(self) -> None:
        try:
            summary = self.service.run()
        except Exception:  # boundary: a bug; say so in the log rather than die silently
            log.exception("the run failed", extra={"event": "requester.crashed"})
            self._code = EXIT_INTERNAL
        else:
            if self.human:
                print_table(self.service.recorder.kept or [], summary, sys.stdout)
            self._code = EXIT_TIMEOUTS if summary.timeouts else EXIT_OK
        finally:
            self.finished.set()


# --- command line ------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = command_line(
        "ggvision-requester",
        "Send images to the classifier over Greengrass IPC and collect the answers. "
        "Without arguments it runs as the component, from its configuration.",
        log_level_help="default: INFO as a component, WARNING with --once",
    )
    parser.add_argument(
        "paths", nargs="*", metavar="IMAGES_OR_DIR", help="image files and folders (implies --once)"
    )
    parser.add_argument(
        "--once", action="store_true", help="one pass, then print a table (a person's run)"
    )
    parser.add_argument("--jsonl", metavar="F", help="write results as JSON Lines (outputJsonl)")
    parser.add_argument("--csv", metavar="F", help="write results as CSV (outputCsv)")
    parser.add_argument(
        "--annotate", metavar="DIR", help="write annotated copies there (annotateDirectory)"
    )
    parser.add_argument("--timeout", type=float, metavar="S", help="per-attempt timeout (timeoutS)")
    parser.add_argument("--retries", type=int, metavar="N", help="retries per request (retries)")
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return _parser().parse_args(argv)


def _human(args: argparse.Namespace) -> bool:
    """A person's run: the table goes to stdout, the JSON log to stderr."""
    return bool(args.once or args.paths)


def cli_config(cfg: RequesterConfig, args: argparse.Namespace) -> RequesterConfig:
    """The configuration with the command line's overrides (validated like a deployment)."""
    update: dict[str, Any] = {"repeat": 1} if args.once or args.paths else {}
    if args.paths:
        missing = [p for p in args.paths if not Path(p).exists()]
        if missing:
            raise ConfigError(f"no such file or folder: {', '.join(missing)}")
        folders = [p for p in args.paths if Path(p).is_dir()]
        if len(folders) > 1:
            raise ConfigError(f"give at most one folder (got {', '.join(folders)})")
        update["imageDirectory"] = folders[0] if folders else ""
        update["images"] = [p for p in args.paths if p not in folders]
    for flag, key in (
        ("jsonl", "outputJsonl"),
        ("csv", "outputCsv"),
        ("annotate", "annotateDirectory"),
        ("timeout", "timeoutS"),
        ("retries", "retries"),
    ):
        value = getattr(args, flag)
        if value is not None:
            update[key] = value
    if not update:
        return cfg
    return RequesterConfig.from_raw({**cfg.model_dump(by_alias=True), **update})


def main(argv: list[str] | None = None) -> int:
    def build(bus: Bus, args: argparse.Namespace) -> RequesterRun:
        human = _human(args)
        cfg = cli_config(RequesterConfig.from_raw(bus.get_configuration()), args)
        service = RequesterService(bus, cfg, keep=human, follow_deployments=not human)
        return RequesterRun(service, human)

    return run_component("requester", build, argv, parser=_parser(), logger=log, interactive=_human)
