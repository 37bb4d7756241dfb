"""The correlator both clients keep their requests in: ids by prefix, deadlines, retries, and
late and duplicate answers told apart and counted."""

from __future__ import annotations

import pytest

from ggvision.correlate import Correlator, Unmatched, unique_prefix


@pytest.fixture
def calls() -> Correlator[str]:
    return Correlator("cam-1234abcd-", remember=3)


def test_ids_carry_the_prefix_and_only_those_are_owned(calls: Correlator[str]) -> None:
    rid = calls.new_id(7)
    assert rid == "cam-1234abcd-7"
    assert calls.owns(rid) and calls.owns("cam-1234abcd-999")  # ours even if never sent
    assert not calls.owns("cam-99999999-7") and not calls.owns("req-1")


def test_unique_prefixes_differ_per_run() -> None:
    a, b = unique_prefix("door"), unique_prefix("door")
    assert a != b
    assert a.startswith("door-") and a.endswith("-") and len(a) == len("door-") + 9


def test_an_answer_settles_its_request_once(calls: Correlator[str]) -> None:
    calls.add("cam-1234abcd-1", "frame 1", deadline=10.0)
    calls.add("cam-1234abcd-2", "frame 2", deadline=11.0)
    assert (len(calls), "cam-1234abcd-1" in calls) == (2, True)
    assert calls.settle("cam-1234abcd-1") == "frame 1"
    assert (len(calls), "cam-1234abcd-1" in calls, calls.get("cam-1234abcd-1")) == (1, False, None)
    assert calls.settle("cam-1234abcd-1") is Unmatched.DUPLICATE
    assert calls.settle("cam-1234abcd-1") is Unmatched.DUPLICATE
    assert (calls.duplicates, calls.late) == (2, 0)
    assert list(calls.items()) == ["frame 2"]


def test_overdue_requests_stay_pending_until_expired_or_armed_again(
    calls: Correlator[str],
) -> None:
    calls.add("cam-1234abcd-1", "a", deadline=10.0)
    calls.add("cam-1234abcd-2", "b", deadline=12.0)
    calls.add("cam-1234abcd-3", "c", deadline=None)  # not awaiting an answer (a back-off)
    assert calls.next_deadline() == 10.0
    assert calls.overdue(9.99) == []
    assert calls.overdue(10.0) == [("cam-1234abcd-1", "a")]  # the deadline itself is overdue
    assert calls.overdue(12.5) == [("cam-1234abcd-1", "a"), ("cam-1234abcd-2", "b")]
    calls.arm("cam-1234abcd-1", 20.0)  # a retry: same id, new deadline
    calls.arm("cam-1234abcd-3", 15.0)
    assert calls.overdue(12.5) == [("cam-1234abcd-2", "b")]
    assert sorted(calls.deadlines()) == [12.0, 15.0, 20.0]
    assert calls.expire("cam-1234abcd-2") == "b"
    assert len(calls) == 2 and calls.overdue(16.0) == [("cam-1234abcd-3", "c")]


def test_an_answer_after_its_request_expired_is_late_then_duplicate(
    calls: Correlator[str],
) -> None:
    calls.add("cam-1234abcd-1", "a", deadline=1.0)
    calls.expire("cam-1234abcd-1")
    assert calls.settle("cam-1234abcd-1") is Unmatched.LATE
    assert calls.settle("cam-1234abcd-1") is Unmatched.DUPLICATE
    assert (calls.late, calls.duplicates) == (1, 1)


def test_a_discarded_request_is_forgotten_not_late(calls: Correlator[str]) -> None:
    calls.add("cam-1234abcd-1", "a", deadline=1.0)
    assert calls.discard("cam-1234abcd-1") == "a"
    assert calls.discard("cam-1234abcd-1") is None
    assert calls.settle("cam-1234abcd-1") is Unmatched.UNKNOWN
    assert (calls.late, calls.duplicates, len(calls)) == (0, 0, 0)


def test_an_id_never_sent_is_unknown_and_not_counted(calls: Correlator[str]) -> None:
    assert calls.settle("cam-1234abcd-404") is Unmatched.UNKNOWN
    assert (calls.late, calls.duplicates) == (0, 0)


def test_memory_of_settled_and_expired_ids_is_bounded(calls: Correlator[str]) -> None:
    for n in range(5):  # remember=3
        calls.add(calls.new_id(n), str(n), deadline=1.0)
        calls.settle(calls.new_id(n))
    for n in range(5, 10):
        calls.add(calls.new_id(n), str(n), deadline=1.0)
        calls.expire(calls.new_id(n))
    assert calls.settle(calls.new_id(0)) is Unmatched.UNKNOWN  # forgotten: the oldest go first
    assert calls.settle(calls.new_id(4)) is Unmatched.DUPLICATE
    assert calls.settle(calls.new_id(5)) is Unmatched.UNKNOWN
    assert calls.settle(calls.new_id(9)) is Unmatched.LATE
