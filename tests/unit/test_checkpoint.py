import random
import zlib

import orjson
import pytest

from cdr_connector.checkpoint import (
    HOUR_MS,
    MAX_DEAD_LETTER_FINGERPRINTS,
    CheckpointState,
    CommittedIds,
    IdRange,
    bill_fingerprint,
)
from cdr_connector.errors import PermanentError


def ranges_of(ids: CommittedIds) -> list[tuple[int, int]]:
    return [(r.low, r.high) for r in ids.ranges]


def test_dense_ids_collapse_into_one_range() -> None:
    ids = CommittedIds()
    ids.add_many(range(1, 100_001), 1000)
    assert ranges_of(ids) == [(1, 100_000)]
    assert len(ids) == 100_000
    assert 1 in ids and 100_000 in ids
    assert 0 not in ids and 100_001 not in ids


def test_gaps_are_kept_and_filled_later() -> None:
    ids = CommittedIds()
    ids.add_many([1, 2, 5, 9], 0)
    assert ranges_of(ids) == [(1, 2), (5, 5), (9, 9)]
    assert 3 not in ids and 4 not in ids
    ids.add_many([3, 4], 0)
    assert ranges_of(ids) == [(1, 5), (9, 9)]
    ids.add(8, 0)
    ids.add(6, 0)
    ids.add(7, 0)
    assert ranges_of(ids) == [(1, 9)]


def test_random_insertion_order_matches_a_plain_set() -> None:
    rng = random.Random(7)
    ids = CommittedIds()
    reference: set[int] = set()
    for _ in range(3000):
        value = rng.randrange(0, 5000)
        ids.add(value, 0)
        reference.add(value)
    assert len(ids) == len(reference)
    assert all((i in ids) == (i in reference) for i in range(-1, 5002))
    lows = [r.low for r in ids.ranges]
    assert lows == sorted(lows)
    assert all(a.high + 1 < b.low for a, b in zip(ids.ranges, ids.ranges[1:], strict=False))


def test_batches_add_exactly_what_ids_added_one_by_one_would() -> None:
    """Runs of consecutive ids are merged at once; the result (ranges and their commit times)
    is that of adding every id on its own, in random batches with gaps, overlaps and repeats."""
    rng = random.Random(11)
    batched, one_by_one = CommittedIds(), CommittedIds()
    reference: set[int] = set()
    for moment in range(400):
        base = rng.randrange(0, 3000)
        batch = [base + rng.randrange(0, 40) for _ in range(rng.randrange(1, 30))]
        batch += list(range(base, base + rng.randrange(0, 25)))
        rng.shuffle(batch)
        batched.add_many(batch, moment)
        for record_id in sorted(batch):
            one_by_one.add(record_id, moment)
        reference.update(batch)
        assert [(r.low, r.high, r.committed_at_ms) for r in batched.ranges] == [
            (r.low, r.high, r.committed_at_ms) for r in one_by_one.ranges
        ]
    assert len(batched) == len(reference)
    assert all((i in batched) == (i in reference) for i in range(-1, 3100))


def test_highest_is_the_top_of_the_last_range() -> None:
    ids = CommittedIds()
    assert ids.highest() is None
    ids.add_many([7, 3, 4], 0)
    assert ids.highest() == 7
    ids.add(5, 0)
    assert ids.highest() == 7


def test_adding_an_id_twice_changes_nothing() -> None:
    ids = CommittedIds()
    ids.add_many([10], 5)
    ids.add_many([11], 6)
    ids.add(10, 99)
    assert ranges_of(ids) == [(10, 11)]
    assert ids.ranges[0].committed_at_ms == 6


def test_ranges_older_than_the_horizon_are_forgotten() -> None:
    ids = CommittedIds([IdRange(1, 10, 1_000), IdRange(20, 30, 5_000), IdRange(40, 40, 9_000)])
    assert ids.forget_before(5_000) == 1
    assert ranges_of(ids) == [(20, 30), (40, 40)]
    assert 5 not in ids


def test_newest_dial_time_of_a_range_is_the_maximum_of_its_ids() -> None:
    ids = CommittedIds()
    ids.add_many([1, 3], 500)
    ids.add_many([2], 100)
    assert ids.ranges[0].committed_at_ms == 500
    ids.add_many([5], 50)
    ids.add_many([4], 900)  # 4 joins both neighbours
    assert ranges_of(ids) == [(1, 5)]
    assert ids.ranges[0].committed_at_ms == 900


def test_the_number_of_ranges_is_bounded_by_dropping_the_lowest() -> None:
    ids = CommittedIds(max_ranges=3)
    ids.add_many([i * 10 for i in range(6)], 0)
    assert ranges_of(ids) == [(30, 30), (40, 40), (50, 50)]


def test_state_round_trips_through_its_encoding() -> None:
    state = CheckpointState(
        source="s1", newest_end_ms=123, committed_total=7, dead_lettered_total=2
    )
    state.committed.add_many([1, 2], 12)
    state.committed.add_many([9], 19)
    state.count_hours([HOUR_MS * 5 + 7, HOUR_MS * 5 + 9, HOUR_MS * 6])
    state.add_dead_letter_fingerprints(["00aa", "00bb"], 15)
    decoded = CheckpointState.decode(state.encode())
    assert decoded.dead_letter_fingerprints == {"00aa": 15, "00bb": 15}
    assert decoded.source == "s1"
    assert ranges_of(decoded.committed) == [(1, 2), (9, 9)]
    assert [r.committed_at_ms for r in decoded.committed.ranges] == [12, 19]
    assert decoded.hour_counts == {HOUR_MS * 5: 2, HOUR_MS * 6: 1}
    assert (decoded.newest_end_ms, decoded.committed_total, decoded.dead_lettered_total) == (
        123,
        7,
        2,
    )


def test_a_million_dense_ids_encode_to_a_few_hundred_bytes() -> None:
    state = CheckpointState(source="s1")
    state.committed.add_many(range(1_000_000), 5)
    assert len(state.encode()) < 300


@pytest.mark.parametrize(
    "payload",
    [b"not zlib", zlib.compress(b"not json"), zlib.compress(orjson.dumps({"version": 99}))],
)
def test_an_unreadable_state_is_a_permanent_error_that_says_what_to_do(payload: bytes) -> None:
    with pytest.raises(PermanentError, match="state topic cannot be read"):
        CheckpointState.decode(payload)


def test_forgetting_drops_old_hour_counts_with_old_ranges() -> None:
    state = CheckpointState(source="s")
    state.committed.add_many([1, 2], 1_000)
    state.committed.add_many([10], 9 * HOUR_MS)
    state.count_hours([0, HOUR_MS * 8 + 1])
    state.forget_before(5 * HOUR_MS)
    assert ranges_of(state.committed) == [(10, 10)]
    assert state.hour_counts == {HOUR_MS * 8: 1}


def test_hour_counts_made_elsewhere_add_to_those_counted_here() -> None:
    state = CheckpointState(source="s1")
    state.count_hours([HOUR_MS * 5 + 7])
    state.add_hour_counts({HOUR_MS * 5: 3, HOUR_MS * 7: 2})
    state.add_hour_counts({HOUR_MS * 7: 1})
    assert state.hour_counts == {HOUR_MS * 5: 4, HOUR_MS * 7: 3}


def test_a_state_written_before_fingerprints_existed_reads_as_having_none() -> None:
    document = orjson.loads(zlib.decompress(CheckpointState(source="s1").encode()))
    del document["dead_letter_fingerprints"]
    decoded = CheckpointState.decode(zlib.compress(orjson.dumps(document)))
    assert decoded.dead_letter_fingerprints == {}


def test_a_fingerprint_is_the_bills_content_whatever_the_order_of_its_keys() -> None:
    one = bill_fingerprint({"id": None, "starttime": "2026-11-26 10:00:00", "billsec": 5})
    same = bill_fingerprint({"billsec": 5, "starttime": "2026-11-26 10:00:00", "id": None})
    other = bill_fingerprint({"id": None, "starttime": "2026-11-26 10:00:00", "billsec": 6})
    assert one == same != other
    assert len(one) == 16 and int(one, 16) >= 0
    assert bill_fingerprint([1, 2]) != bill_fingerprint([2, 1])


def test_fingerprints_are_forgotten_with_the_ranges_of_their_time() -> None:
    state = CheckpointState(source="s")
    state.add_dead_letter_fingerprints(["old"], 1_000)
    state.add_dead_letter_fingerprints(["new"], 9 * HOUR_MS)
    state.forget_before(5 * HOUR_MS)
    assert state.dead_letter_fingerprints == {"new": 9 * HOUR_MS}


def test_fingerprints_are_bounded_by_dropping_the_oldest() -> None:
    state = CheckpointState(source="s")
    state.add_dead_letter_fingerprints(["first", "second"], 1)
    state.add_dead_letter_fingerprints(["first"], 2)  # seen again: now the newest
    assert list(state.dead_letter_fingerprints) == ["second", "first"]
    state.add_dead_letter_fingerprints([f"f{i}" for i in range(MAX_DEAD_LETTER_FINGERPRINTS)], 3)
    assert len(state.dead_letter_fingerprints) == MAX_DEAD_LETTER_FINGERPRINTS
    assert "second" not in state.dead_letter_fingerprints
    assert "first" not in state.dead_letter_fingerprints
    assert next(iter(state.dead_letter_fingerprints)) == "f0"
