"""The backoff policy: exponential ceiling, full jitter under it, and the cap."""

import random

import pytest

from cdr_connector.backoff import Backoff


def test_ceiling_doubles_from_the_initial_delay_up_to_the_cap() -> None:
    backoff = Backoff(0.5, 30.0)
    assert [backoff.ceiling(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]


def test_delays_are_spread_over_the_whole_interval_under_the_ceiling() -> None:
    backoff = Backoff(1.0, 60.0, random.Random(7))
    delays = [backoff.delay(4) for _ in range(2000)]
    assert all(0.0 <= d <= 8.0 for d in delays)
    # Full jitter: short and long pauses alike, not a cluster just under the ceiling.
    assert min(delays) < 0.5
    assert max(delays) > 7.5
    assert 3.5 < sum(delays) / len(delays) < 4.5


def test_a_seeded_random_source_makes_delays_reproducible() -> None:
    first = Backoff(0.5, 30.0, random.Random(42))
    second = Backoff(0.5, 30.0, random.Random(42))
    assert [first.delay(n) for n in range(1, 10)] == [second.delay(n) for n in range(1, 10)]


def test_a_caller_that_never_stops_counting_still_gets_the_cap() -> None:
    backoff = Backoff(0.5, 30.0, random.Random(1))
    assert backoff.ceiling(10_000) == 30.0
    assert 0.0 <= backoff.delay(10_000) <= 30.0


def test_a_maximum_equal_to_the_initial_delay_is_a_constant_ceiling() -> None:
    backoff = Backoff(2.0, 2.0)
    assert [backoff.ceiling(n) for n in (1, 2, 10)] == [2.0, 2.0, 2.0]


def test_the_exponent_stops_growing_at_64_doublings() -> None:
    uncapped = Backoff(1.0, 1e300)
    assert uncapped.ceiling(64) == 2.0**63
    assert uncapped.ceiling(65) == 2.0**64
    assert uncapped.ceiling(10_000) == 2.0**64


@pytest.mark.parametrize(
    ("initial", "maximum", "message"),
    [(0.0, 1.0, "initial delay must be > 0"), (2.0, 1.0, "must not be below the initial")],
)
def test_nonsense_settings_are_rejected(initial: float, maximum: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Backoff(initial, maximum)


def test_attempts_count_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        Backoff(1.0, 2.0).delay(0)
