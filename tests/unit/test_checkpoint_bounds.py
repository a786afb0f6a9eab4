"""The checkpoint's limits at their edges: how much the state keeps by default, and what it
forgets exactly at the lookback horizon. The figures are written out here rather than read
from the module's constants, so that changing a limit is a visible decision (the README's
"Known limits" quotes the fingerprints' one)."""

from __future__ import annotations

import zlib

import orjson
import pytest

from cdr_connector.checkpoint import HOUR_MS, STATE_VERSION, CheckpointState
from cdr_connector.errors import PermanentError


def test_one_fingerprint_over_the_bound_of_1_000_drops_the_oldest() -> None:
    state = CheckpointState(source="s")
    state.add_dead_letter_fingerprints([f"f{i}" for i in range(1_000)], 1)
    assert len(state.dead_letter_fingerprints) == 1_000
    state.add_dead_letter_fingerprints(["newest"], 2)
    assert len(state.dead_letter_fingerprints) == 1_000
    assert "f0" not in state.dead_letter_fingerprints
    assert "f1" in state.dead_letter_fingerprints and "newest" in state.dead_letter_fingerprints


def test_committed_ids_keep_20_000_ranges_by_default_read_or_new() -> None:
    """Every other id: no two adjacent, so each is a range of its own."""
    spaced = range(0, 2 * 20_001, 2)
    read = CheckpointState.decode(CheckpointState(source="s").encode()).committed
    for committed in (CheckpointState(source="s").committed, read):
        committed.add_many(spaced, 0)
        assert len(committed.ranges) == 20_000
        assert 0 not in committed and 2 in committed and 40_000 in committed


def test_an_hour_is_forgotten_once_it_ended_before_the_horizon_not_when_it_ends_at_it() -> None:
    state = CheckpointState(source="s")
    state.count_hours([5 * HOUR_MS, 6 * HOUR_MS + 1])
    state.forget_before(6 * HOUR_MS)  # the 05:00 hour ends exactly here
    assert state.hour_counts == {5 * HOUR_MS: 1, 6 * HOUR_MS: 1}
    state.forget_before(6 * HOUR_MS + 1)
    assert state.hour_counts == {6 * HOUR_MS: 1}


def test_a_state_of_a_later_version_is_refused_even_when_every_field_is_there() -> None:
    """A later version may mean something else by the same fields: reading it as this one
    would deduplicate against ids it does not hold."""
    document = orjson.loads(zlib.decompress(CheckpointState(source="s").encode()))
    assert document["version"] == STATE_VERSION == 1
    later = zlib.compress(orjson.dumps(document | {"version": STATE_VERSION + 1}))
    with pytest.raises(PermanentError, match="unsupported state version 2"):
        CheckpointState.decode(later)
