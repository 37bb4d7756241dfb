"""A deterministic, runtime-free backend for tests of the pipeline (queueing, replies, model
swaps, timing). It never opens the model file and its scores mean nothing: it must not stand in
for a real runtime anywhere else (the real backends are tested on real model files).

Scores are logits drawn from a generator seeded by a hash of the input bytes, so the same image
always gets the same answer and different images (almost always) different ones.

Options:
    ``delay_ms``: sleep this long in every inference (a slow model).
    ``fail_on``: ``"load"`` makes :meth:`load` fail with ModelError; an int or a list of ints
        makes those inference calls (1-based count) raise RuntimeError.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import numpy as np

from ggvision.serving.models.backends.base import Backend
from ggvision.serving.models.store import Model, ModelError


class FakeBackend(Backend):
    name = "fake"

    def __init__(
        self, model: Model, *, threads: int = 1, options: dict[str, Any] | None = None
    ) -> None:
        super().__init__(model, threads=threads, options=options)
        self.delay_s = float(self.options.get("delay_ms", 0)) / 1000.0
        if self.delay_s < 0:
            raise ModelError("fake backend: delay_ms must be >= 0")
        fail_on = self.options.get("fail_on")
        self.fail_on_load = fail_on == "load"
        if fail_on is None or self.fail_on_load:
            self.fail_calls: frozenset[int] = frozenset()
        elif isinstance(fail_on, int) and not isinstance(fail_on, bool):
            self.fail_calls = frozenset({fail_on})
        elif isinstance(fail_on, list | tuple | set | frozenset) and all(
            isinstance(n, int) and not isinstance(n, bool) for n in fail_on
        ):
            self.fail_calls = frozenset(fail_on)
        else:
            raise ModelError(f"fake backend: fail_on must be 'load', an int or ints: {fail_on!r}")
        self.calls = 0

    def _load(self) -> None:
        if self.fail_on_load:
            raise ModelError("fake backend: failing load() as configured (fail_on='load')")

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.calls in self.fail_calls:
            raise RuntimeError(f"fake backend: failing call {self.calls} as configured")
        seed = hashlib.blake2b(np.ascontiguousarray(batch).tobytes(), digest_size=8).digest()
        rng = np.random.default_rng(int.from_bytes(seed, "little"))
        return (rng.standard_normal(self.model.manifest.num_classes) * 3.0).astype(np.float32)
