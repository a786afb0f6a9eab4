"""The brake's counting rules, one at a time, on a bare `Brake`."""

from __future__ import annotations

from cdr_connector.brake import Brake
from cdr_connector.config import BrakeSettings


def test_a_new_brake_is_released_and_gives_no_reason() -> None:
    brake = Brake(BrakeSettings())
    assert not brake.engaged
    assert brake.kind is None
    assert brake.reason is None


def test_exactly_max_commit_failures_in_a_row_engage_the_brake() -> None:
    brake = Brake(BrakeSettings(max_commit_failures=3))
    assert not brake.commit_failed(RuntimeError("one"))
    assert not brake.commit_failed(RuntimeError("two"))
    assert not brake.engaged
    assert brake.commit_failed(RuntimeError("three"))
    assert brake.kind == "commit_failures"
    assert brake.reason is not None
    assert "3 transactions in a row" in brake.reason
    assert "RuntimeError: three" in brake.reason


def test_one_commit_failure_engages_a_brake_that_allows_one() -> None:
    brake = Brake(BrakeSettings(max_commit_failures=1))
    assert brake.commit_failed(RuntimeError("boom"))
    assert brake.reason is not None and "1 transactions in a row" in brake.reason


def test_a_committed_batch_starts_the_count_of_failures_in_a_row_again() -> None:
    brake = Brake(BrakeSettings(max_commit_failures=3))
    assert not brake.commit_failed(RuntimeError("one"))
    assert not brake.commit_failed(RuntimeError("two"))
    assert not brake.observe(records=5, dead_letters=0)
    assert not brake.commit_failed(RuntimeError("one again"))
    assert not brake.commit_failed(RuntimeError("two again"))
    assert not brake.engaged
    assert brake.commit_failed(RuntimeError("three"))
    assert brake.reason is not None and "3 transactions in a row" in brake.reason


def test_an_engaged_brake_keeps_its_first_reason() -> None:
    brake = Brake(BrakeSettings(window_bills=10, dead_letter_ratio=0.5, max_commit_failures=1))
    assert brake.observe(records=0, dead_letters=10)
    first = brake.reason
    assert not brake.commit_failed(RuntimeError("later"))
    assert brake.kind == "dead_letters"
    assert brake.reason == first
