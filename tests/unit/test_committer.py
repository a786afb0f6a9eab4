"""The committer: dedupe, convert, dead letters, state, one transaction, with fakes (no network)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from cdr_connector.avro import decode
from cdr_connector.checkpoint import CheckpointState
from cdr_connector.committer import CommitSummary
from cdr_connector.errors import KafkaTransientError, ProducerFencedError
from cdr_connector.pipeline import Pipeline
from tests.fakes import SOURCE, FakeRecorder, FakeSink, batch, bill, make_settings, started


async def commit(pipeline: Pipeline, *bills_of: Any) -> CommitSummary:
    (summary,) = await pipeline.committer.commit(list(bills_of))
    return summary


async def test_records_are_sorted_by_id_and_the_state_closes_the_transaction() -> None:
    sink = FakeSink()
    pipeline = await started(sink)
    await commit(pipeline, batch(bill(3), bill(1, "8002"), bill(2)))
    [transaction] = sink.transactions
    data = [m for m in transaction if m.topic == "cdr.calls"]
    assert [decode(m.value)["id"] for m in data] == [1, 2, 3]
    assert [m.key for m in data] == [b"8002", b"8001", b"8001"]
    assert transaction[-1].topic == "cdr-connector.state"
    assert transaction[-1].key == SOURCE.encode()
    state = CheckpointState.decode(transaction[-1].value)
    assert all(i in state.committed for i in (1, 2, 3))
    assert state.committed_total == 3


async def test_ids_already_committed_or_repeated_are_dropped() -> None:
    sink, recorder = FakeSink(), FakeRecorder()
    pipeline = await started(sink, recorder=recorder)
    await commit(pipeline, batch(bill(1), bill(2)))
    summary = await commit(pipeline, batch(bill(2), bill(3), bill(3), mode="sweep"))
    assert summary.produced == 1
    assert summary.deduplicated == 2
    assert [decode(m.value)["id"] for m in sink.on("cdr.calls")] == [1, 2, 3]
    assert recorder.total("deduplicated") == 2, "reported as deduplicated"


async def test_an_id_below_the_highest_committed_but_never_committed_is_published() -> None:
    sink = FakeSink()
    pipeline = await started(sink)
    await commit(pipeline, batch(bill(1), bill(3)))
    summary = await commit(pipeline, batch(bill(2), bill(3), mode="sweep"))
    assert (summary.produced, summary.deduplicated) == (1, 1)
    assert [decode(m.value)["id"] for m in sink.on("cdr.calls")] == [1, 3, 2]


async def test_a_batch_of_only_duplicates_commits_nothing() -> None:
    sink = FakeSink()
    pipeline = await started(sink)
    await commit(pipeline, batch(bill(1)))
    await commit(pipeline, batch(bill(1)))
    assert len(sink.transactions) == 1


async def test_a_bad_bill_goes_to_the_dead_letter_topic_and_the_rest_proceeds() -> None:
    sink = FakeSink()
    pipeline = await started(sink)
    await commit(pipeline, batch(bill(1), bill(2, starttime="2026-02-30 10:00:00"), bill(3)))
    assert [decode(m.value)["id"] for m in sink.on("cdr.calls")] == [1, 3]
    [letter] = sink.on("cdr.calls.dlq")
    headers = dict(letter.headers)
    assert headers["cdr.stage"] == b"normalise"
    assert headers["cdr.field"] == b"starttime"
    assert headers["cdr.id"] == b"2"
    assert b"2026-02-30" in letter.value
    assert 2 in pipeline.committer.state.committed, (
        "a dead-lettered id is not fetched again by a sweep"
    )


async def test_a_record_too_large_for_kafka_is_dead_lettered_not_retried_forever() -> None:
    """The broker would refuse it and fail every transaction it is in; as a dead letter it is
    cut to a JSON head that fits, and the rest of the batch is committed."""
    sink = FakeSink()
    pipeline = await started(sink, settings=make_settings(kafka={"max_value_bytes": 2048}))
    huge = bill(2, userkey="k" * 5000)
    await commit(pipeline, batch(bill(1), huge, bill(3, userkey="k" * 1500)))
    assert [decode(m.value)["id"] for m in sink.on("cdr.calls")] == [1, 3]
    [letter] = sink.on("cdr.calls.dlq")
    headers = dict(letter.headers)
    assert headers["cdr.stage"] == b"encode"
    assert b"kafka.max_value_bytes (2048)" in headers["cdr.error"]
    assert headers["cdr.id"] == b"2"
    whole = orjson.dumps(huge)
    assert headers["cdr.truncated"] == str(len(whole)).encode()
    assert len(letter.value) <= 2048
    cut = orjson.loads(letter.value)
    assert cut["bytes"] == len(whole)
    assert whole.decode().startswith(cut["truncated_bill"])
    assert 2 in pipeline.committer.state.committed


async def test_a_bad_bill_too_large_to_dead_letter_whole_is_cut() -> None:
    sink = FakeSink()
    pipeline = await started(sink, settings=make_settings(kafka={"max_value_bytes": 4096}))
    await commit(pipeline, batch(bill(1, starttime="2026-02-30 10:00:00", userid="u" * 9000)))
    [letter] = sink.on("cdr.calls.dlq")
    assert dict(letter.headers)["cdr.stage"] == b"normalise"
    assert len(letter.value) <= 4096
    assert orjson.loads(letter.value)["truncated_bill"].startswith('{"id":1,')


async def test_a_bill_without_an_id_is_dead_lettered_without_a_key() -> None:
    sink = FakeSink()
    pipeline = await started(sink)
    await commit(pipeline, batch([1, 2], bill(5)))
    [letter] = sink.on("cdr.calls.dlq")
    assert letter.key is None
    assert letter.value == b"[1,2]"


async def test_a_bill_without_an_id_listed_again_is_dead_lettered_once() -> None:
    """Sweeps and audits list it again and again; its content is what tells it apart, in the
    same batch, in later batches and after a restart."""
    sink = FakeSink()
    pipeline = await started(sink)
    no_id = bill(0, id="not-a-number", starttime="2026-11-26 09:15:00")
    other = bill(0, id=None, billsec=7)
    first = await commit(pipeline, batch(no_id, bill(1), dict(no_id)))
    summary = await commit(pipeline, batch(bill(1), no_id, other, mode="sweep"))
    letters = sink.on("cdr.calls.dlq")
    assert [orjson.loads(m.value) for m in letters] == [no_id, other]
    assert (summary.dead_lettered, summary.deduplicated) == (1, 2)
    state = pipeline.committer.state
    assert len(state.dead_letter_fingerprints) == 2
    assert state.dead_lettered_total == 2
    # each dial hour is counted once, so the audit finds the hour complete
    assert [len(s.dead_letter_start_ms) for s in (first, summary)] == [1, 1]
    restarted_sink = FakeSink()
    restarted = await started(restarted_sink, sink.transactions[-1][-1].value)
    await commit(restarted, batch(dict(other), no_id, mode="audit"))
    assert restarted_sink.transactions == []


async def test_a_retryable_commit_failure_commits_the_same_messages_again() -> None:
    sink = FakeSink()
    pipeline = await started(sink)
    sink.failures = [KafkaTransientError("broker away"), KafkaTransientError("still away")]
    await commit(pipeline, batch(bill(1), bill(2)))
    assert len(sink.transactions) == 1
    assert [decode(m.value)["id"] for m in sink.on("cdr.calls")] == [1, 2]
    assert CheckpointState.decode(sink.transactions[0][-1].value).committed_total == 2


async def test_a_fenced_producer_stops_the_pipeline_and_says_why() -> None:
    sink = FakeSink()
    pipeline = await started(sink)
    sink.failures = [ProducerFencedError("fenced by a newer instance")]
    with pytest.raises(ProducerFencedError):
        await commit(pipeline, batch(bill(1)))
    assert pipeline.status.not_ready_reason() == "fenced by a newer instance"


async def test_the_state_read_at_start_is_the_one_deduplicated_against() -> None:
    first = FakeSink()
    pipeline = await started(first)
    await commit(pipeline, batch(bill(1), bill(2)))
    restarted = FakeSink()
    again = await started(restarted, first.transactions[-1][-1].value)
    await commit(again, batch(bill(1), bill(2), bill(3), mode="sweep"))
    assert [decode(m.value)["id"] for m in restarted.on("cdr.calls")] == [3]
