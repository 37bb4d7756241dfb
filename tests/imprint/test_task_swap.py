"""Live learning swaps the serving task, not the model: the new ActiveModel shares the backend,
and the worker counts a backend's users, so retiring the model after a later model swap waits for
every request on that backend, whichever task version it was prepared with."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from ggvision.bus import IpcBus
from ggvision.contract import InferenceResult
from ggvision.serving import ActiveModel
from tests.classifier.test_worker_swap import bus, fake_active, fake_worker, png

__all__ = ["bus"]  # the fixture


def test_retire_waits_for_requests_of_every_task_on_the_backend(
    bus: IpcBus, tmp_path: Path
) -> None:
    first = fake_active(tmp_path, "embedding", delay_ms=0)
    second = ActiveModel(first.model, first.backend, first.info, first.task)  # new classes
    new = fake_active(tmp_path, "new", delay_ms=0)
    events: list[str] = []
    gates = [threading.Event(), threading.Event()]  # r1's and r2's inference wait on these
    entered = [threading.Event(), threading.Event()]
    real = first.backend._infer

    def gated(batch: np.ndarray) -> np.ndarray:
        n = events.count("infer")
        entered[n].set()
        assert gates[n].wait(20)
        events.append("infer")
        return real(batch)

    first.backend._infer = gated  # type: ignore[method-assign]
    first.backend.close = lambda: events.append("closed")  # type: ignore[method-assign]
    worker = fake_worker(bus, first)
    results: list[InferenceResult] = []
    worker.on_result = results.append
    worker.start()
    retired: list[bool] = []
    try:
        image = png()
        worker.on_message("local/inference", {"id": "r1", "image": {"data": image}})
        assert entered[0].wait(20)  # r1 is in inference on the backend, with the first task
        assert worker.swap_model(second) is first  # a task swap: nothing retired
        worker.on_message("local/inference", {"id": "r2", "image": {"data": image}})
        deadline = time.monotonic() + 20
        while len(worker._handoff) < 1:  # r2 prepared, holding the second task
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert worker.swap_model(new) is second
        retirer = threading.Thread(target=lambda: retired.append(worker.retire(first)))
        retirer.start()
        gates[0].set()
        assert entered[1].wait(20)  # r1 done, r2 in inference on the same backend
        retirer.join(0.5)
        assert retirer.is_alive() and "closed" not in events  # still waiting for r2
        gates[1].set()
        retirer.join(20)
        deadline = time.monotonic() + 20
        while len(results) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        for g in gates:
            g.set()
        worker.stop()
    assert retired == [True]
    assert events == ["infer", "infer", "closed"]  # closed after r2 too, not only r1
    assert sorted(r.id for r in results) == ["r1", "r2"]
    assert all(r.status == "ok" for r in results)
