"""DeferWhileBusy: the decider a model component answers PreComponentUpdateEvents with (its use by
the real classifier: tests/classifier/test_component_updates.py)."""

from __future__ import annotations

from ggvision.serving.updates import DeferWhileBusy


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_defers_while_busy_and_goes_ahead_once_idle() -> None:
    busy = [3]
    defer = DeferWhileBusy(lambda: busy[0], recheck_after_ms=1500, clock=Clock())
    assert defer("d-1", False) == (1500, "3 request(s) in flight")
    busy[0] = 0
    assert defer("d-1", False) == (0, "idle")
    assert defer.deferrals == 1


def test_a_deployment_is_deferred_for_max_defer_s_at_most() -> None:
    clock = Clock()
    defer = DeferWhileBusy(lambda: 1, recheck_after_ms=2000, max_defer_s=10.0, clock=clock)
    assert defer("d-1", False)[0] == 2000
    clock.now += 9.9
    assert defer("d-1", False)[0] == 2000
    clock.now += 0.1
    recheck, message = defer("d-1", False)
    assert recheck == 0
    assert "deferred 10 s already" in message
    assert defer("d-2", False)[0] == 2000  # another deployment has its own allowance
    defer.done("d-1")
    assert defer("d-1", False)[0] == 2000  # a deployment done is forgotten


def test_with_progress_only_the_requests_before_the_notice_hold_the_update() -> None:
    # (received, settled): a camera's stream keeps one request in flight all the time.
    counts = [(10, 4)]
    defer = DeferWhileBusy(
        lambda: counts[0][0] - counts[0][1], progress=lambda: counts[0], clock=Clock()
    )
    assert defer("d-1", False)[0] > 0  # 6 of the 10 received before the notice are pending
    counts[0] = (14, 9)  # 4 more came, 5 more answered: one of the first 10 still pending
    assert defer("d-1", False)[0] > 0
    counts[0] = (18, 10)  # the first 10 answered, 8 newer ones in flight
    assert defer("d-1", False) == (0, "the requests received before the update are answered")
    defer.done("d-1")
    assert defer("d-2", False)[0] > 0  # a new deployment takes a new mark (18)
    assert defer.deferrals == 3
