"""Component updates: defer a deployment while requests are in flight, so that an update (a
restart, a new version, a configuration change) never cuts a request off.

:class:`DeferWhileBusy` is the decider of :meth:`ggvision.bus.Bus.subscribe_component_updates`:
to each PreComponentUpdateEvent it answers ``recheckAfterMs`` (a few seconds) while any request
is outstanding (received and not yet answered), and ``0`` once idle, which lets the update go
ahead at once (the core then need not wait out its timeout). Given ``progress`` (the worker's
admission numbers), it waits only for the requests received before the deployment's
first event: under a camera's constant stream the update goes ahead once those are answered
(the queue drained once), not when the stream stops. It gives up deferring one deployment
after ``max_defer_s`` and lets it through, logged. Wire it in a model component's composition
root::

    defer = DeferWhileBusy(lambda: outstanding(worker), progress=lambda: progress(worker))
    bus.subscribe_component_updates(defer, defer.done)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ggvision.serving.worker import Worker

log = logging.getLogger(__name__)

RECHECK_AFTER_MS = 2000
MAX_DEFER_S = 60.0


def progress(worker: Worker) -> tuple[int, int]:
    """(admitted, settled): the requests ``worker`` has admitted, and how many of the first
    admitted are all answered (:meth:`~ggvision.serving.intake.Intake.watermark`). A request
    refused at once is answered on arrival and never holds an update."""
    return worker.intake.watermark()


def outstanding(worker: Worker) -> int:
    """Requests ``worker`` has received and not answered yet (queued, being prepared or run),
    from one consistent snapshot of its counters: every received message ends as exactly one
    ``ok``, error, or duplicate (:mod:`ggvision.serving.replies`)."""
    counts, _ = worker.snapshot()
    settled = (
        counts["ok"]
        + sum(counts["errors"].values())
        + counts["duplicates_in_flight"]
        + counts["duplicates_answered"]
    )
    return max(0, int(counts["received"]) - int(settled))


class DeferWhileBusy:
    """Answers PreComponentUpdateEvents: defer while ``in_flight()`` is not 0.

    ``progress``: (admitted, settled) admission numbers (:func:`progress`); when given, only the
    requests admitted before a deployment's first event hold it (every one of the first
    ``admitted`` then must be answered, whatever order the sources' turns answer them in).
    ``recheck_after_ms``: how long each deferral asks for;
    ``max_defer_s``: after that long since the first event of a deployment, its update goes
    ahead even if busy; ``role``: the prefix of the log event keys.
    """

    def __init__(
        self,
        in_flight: Callable[[], int],
        *,
        progress: Callable[[], tuple[int, int]] | None = None,
        recheck_after_ms: int = RECHECK_AFTER_MS,
        max_defer_s: float = MAX_DEFER_S,
        role: str = "serving",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.in_flight = in_flight
        self.progress = progress
        self.recheck_after_ms = recheck_after_ms
        self.max_defer_s = max_defer_s
        self.role = role
        self._clock = clock
        self._lock = threading.Lock()
        self._since: dict[str, float] = {}  # deploymentId -> first PreComponentUpdateEvent
        self._mark: dict[str, int] = {}  # deploymentId -> requests received by then
        self.deferrals = 0  # answers that deferred an update

    def __call__(self, deployment_id: str, is_ggc_restarting: bool) -> tuple[int, str]:
        busy = self.in_flight()
        counts = self.progress() if self.progress is not None else None
        now = self._clock()
        with self._lock:
            since = self._since.setdefault(deployment_id, now)
            drained = False
            if counts is not None:
                mark = self._mark.setdefault(deployment_id, counts[0])
                # What came before the notice is answered; later requests do not hold it.
                drained = bool(busy) and counts[1] >= mark
                busy = 0 if drained else busy
            if busy and now - since < self.max_defer_s:
                self.deferrals += 1
                recheck = self.recheck_after_ms
            else:
                recheck = 0
        if recheck:
            log.info(
                "deferring the update of deployment %s: %d request(s) in flight",
                deployment_id,
                busy,
                extra={"event": f"{self.role}.update_deferred", "in_flight": busy},
            )
            return recheck, f"{busy} request(s) in flight"
        if busy:
            log.warning(
                "update of deployment %s goes ahead with %d request(s) in flight: deferred "
                "for %.0f s already",
                deployment_id,
                busy,
                self.max_defer_s,
                extra={"event": f"{self.role}.update_not_deferred", "in_flight": busy},
            )
            return 0, f"{busy} request(s) in flight, but deferred {self.max_defer_s:g} s already"
        log.info(
            "ready for the update of deployment %s",
            deployment_id,
            extra={"event": f"{self.role}.update_ready"},
        )
        return 0, "the requests received before the update are answered" if drained else "idle"

    def done(self, deployment_id: str) -> None:
        """PostComponentUpdateEvent: the deployment is over."""
        with self._lock:
            self._since.pop(deployment_id, None)
            self._mark.pop(deployment_id, None)
        log.info(
            "deployment %s applied",
            deployment_id,
            extra={"event": f"{self.role}.update_applied"},
        )
