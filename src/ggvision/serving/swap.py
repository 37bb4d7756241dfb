"""Validate-then-swap: a new model is loaded, warmed and checked beside the running one before a
deployment is accepted, kept as the candidate for the reload that follows (released after
:data:`CANDIDATE_TTL_S` when that never comes: another component rejected the deployment), and
swapped in between two requests. A model that cannot serve never replaces the running one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ggvision.bus import Bus
from ggvision.errors import GgvisionError
from ggvision.serving.models.loading import ActiveModel, ModelSettings
from ggvision.serving.models.store import ModelError
from ggvision.serving.worker import Worker

log = logging.getLogger(__name__)

# A model validated for a deployment that never applied (another component rejected it) is
# released after this long.
CANDIDATE_TTL_S = 120.0

C = TypeVar("C", bound=ModelSettings)


class ModelSwapper(Generic[C]):
    """Owns the swap lock and the candidate; records the last model error and swap (for the
    status report). ``prepare``: configuration -> a model that serves (ModelError otherwise)."""

    def __init__(
        self,
        bus: Bus,
        worker: Worker,
        prepare: Callable[[C], ActiveModel],
        *,
        role: str,
        model_error: str | None = None,
        candidate_ttl_s: float = CANDIDATE_TTL_S,
    ) -> None:
        self.bus = bus
        self.worker = worker
        self.prepare = prepare
        self.role = role
        self.candidate_ttl_s = candidate_ttl_s
        # Held while a model is loaded or swapped, and by the component's reload.
        self.lock = threading.Lock()
        # A model loaded by validate() or a command, used by the reload that follows.
        self._candidate: tuple[tuple[Any, ...], ActiveModel] | None = None
        self.last_model_error = model_error
        self.last_swap: dict[str, Any] | None = None

    def validate(self, proposed: C, current: C) -> tuple[bool, str]:
        """Accept ``proposed`` only if its model loads, warms and answers as its task expects
        (nothing to load when it selects the running model); the loaded model is kept for the
        swap that follows."""
        if proposed.model_identity() == current.model_identity() and self.worker.active is not None:
            return True, ""
        with self.lock:
            try:
                self.keep_candidate(proposed, self.prepare(proposed))
            except (ModelError, GgvisionError) as exc:
                log.warning(
                    "deployment rejected: model %s: %s",
                    proposed.model_key,
                    exc,
                    extra={"event": f"{self.role}.validate_rejected"},
                )
                return False, f"model {proposed.model_key!r} cannot serve: {exc}"
        return True, ""

    def swap(self, new: C) -> bool:
        """Load ``new``'s model beside the running one (or take the candidate) and swap; False
        (old keeps serving) when it cannot serve. Called with :attr:`lock` held."""
        started = time.monotonic()
        try:
            active = self.take_candidate(new) or self.prepare(new)
        except (ModelError, GgvisionError) as exc:
            # A bad new model never replaces the running one.
            self.last_model_error = f"model {new.model_key!r}: {exc}"
            self.last_swap = {"ok": False, "model_key": new.model_key, "error": str(exc)}
            log.error(
                "new model failed to load; keeping the current one: %s",
                exc,
                extra={"event": f"{self.role}.swap_failed"},
            )
            return False
        old = self.worker.swap_model(active)
        self.last_model_error = None
        self.last_swap = {
            "ok": True,
            "model_key": new.model_key,
            "model": active.info.model_dump(),
            "load_ms": round((time.monotonic() - started) * 1000, 1),
        }
        self.bus.update_state("RUNNING")
        log.info(
            "model swapped to %s",
            active.info.model_dump(),
            extra={"event": f"{self.role}.swapped"},
        )
        self.worker.retire(old)  # closes after the requests prepared for it are answered
        return True

    # --- the candidate (call with the lock held) -----------------------------------------------
    def keep_candidate(self, cfg: C, active: ActiveModel) -> None:
        self.drop_candidate()
        self._candidate = (cfg.model_identity(), active)
        timer = threading.Timer(self.candidate_ttl_s, self._expire_candidate, args=(active,))
        timer.daemon = True
        timer.start()

    def _expire_candidate(self, active: ActiveModel) -> None:
        with self.lock:
            if self._candidate is not None and self._candidate[1] is active:
                self.drop_candidate()

    def take_candidate(self, cfg: C) -> ActiveModel | None:
        cand, self._candidate = self._candidate, None
        if cand is None:
            return None
        if cand[0] == cfg.model_identity():
            return cand[1]
        cand[1].backend.close()
        return None

    def drop_candidate(self) -> None:
        cand, self._candidate = self._candidate, None
        if cand is not None:
            cand[1].backend.close()
