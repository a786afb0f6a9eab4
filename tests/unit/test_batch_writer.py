"""A batch's bills -> its records, failures and messages, and what they add up to.

Each test runs twice: on the module as imported (the mypyc build where setup.py could compile
it) and on its Python source, so both builds are held to the same behaviour.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cdr_connector import batch_writer
from cdr_connector.avro import SingleObjectEncoder, decode
from cdr_connector.bill_writer import BillWriter, EncodedRecord
from cdr_connector.checkpoint import CommittedIds, hour_start
from tests.fakes import bill
from tests.unit import builds
from tests.unit.test_records import context, utc_ms

HOUR = 3_600_000

HEADERS = (("cdr.source", b"acme"), ("cdr.schema", b"v1"))
BUILDS = builds.both(batch_writer)


@pytest.fixture(params=list(BUILDS))
def impl(request: pytest.FixtureRequest) -> ModuleType:
    return BUILDS[request.param]


def new_writer(
    impl: ModuleType, committed: CommittedIds | None = None, limit: int = 1 << 20
) -> Any:
    bills = BillWriter(SingleObjectEncoder(), context())
    return impl.BatchWriter(bills, committed or CommittedIds(), limit)


def write_all(writer: Any, bills: list[Any], slice_size: int = 1000) -> None:
    for start in range(0, len(bills), slice_size):
        writer.write(bills, start, min(start + slice_size, len(bills)))


def test_committed_and_repeated_ids_are_dropped_and_counted(impl: ModuleType) -> None:
    committed = CommittedIds()
    committed.add_many([10, 11, 12, 20], 0)
    writer = new_writer(impl, committed)
    write_all(writer, [bill(11), bill(15), bill(21), bill(15), bill(20), bill(21), bill(12)])
    assert [r.id for r in writer.records] == [15, 21]
    assert writer.deduplicated == 5
    assert sorted(writer.new_ids) == [15, 21]


def test_an_id_repeated_in_a_later_slice_is_dropped_too(impl: ModuleType) -> None:
    writer = new_writer(impl)
    write_all(writer, [bill(1), bill(2), bill(3), bill(2), bill(1)], slice_size=2)
    assert [r.id for r in writer.records] == [1, 2, 3]
    assert writer.deduplicated == 2


def test_a_bill_that_cannot_be_a_record_is_set_aside_with_its_id_and_reason(
    impl: ModuleType,
) -> None:
    bad = bill(2, starttime="2026-02-30 10:00:00")
    writer = new_writer(impl)
    write_all(writer, [bill(1), bad, [1, 2], bill(3)])
    assert [r.id for r in writer.records] == [1, 3]
    (first, record_id, error), (second, no_id, _) = writer.failures
    assert (first, record_id, error.stage, error.field) == (bad, 2, "normalise", "starttime")
    assert (second, no_id) == ([1, 2], None)
    assert sorted(writer.new_ids) == [1, 2, 3], "a dead letter's id is committed, never refetched"


class _ExplodingBill(dict[str, Any]):
    """A bill whose fields raise as they are read: nothing a bill's content could do. (Not a
    plain dict, so it has no id the batch could commit.)"""

    def __getitem__(self, key: str) -> Any:
        raise LookupError(key)

    def get(self, key: str, default: Any = None) -> Any:
        raise LookupError(key)


def test_a_bill_failing_the_writer_unexpectedly_is_set_aside_saying_so(impl: ModuleType) -> None:
    exploding = _ExplodingBill(bill(4))
    writer = new_writer(impl)
    write_all(writer, [exploding, bill(5)])
    [(failed, record_id, error)] = writer.failures
    assert (failed, record_id, error.stage) == (exploding, None, "convert")
    assert str(error).startswith("converting the bill failed unexpectedly (LookupError: ")
    assert writer.new_ids == [5]
    assert [r.id for r in writer.records] == [5]


def test_a_record_larger_than_the_limit_fails_at_the_encode_stage(impl: ModuleType) -> None:
    writer = new_writer(impl, limit=2048)
    write_all(writer, [bill(1), bill(2, userkey="k" * 5000)])
    [(_, record_id, error)] = writer.failures
    assert (record_id, error.stage) == (2, "encode")
    assert "kafka.max_value_bytes (2048)" in str(error)
    assert [r.id for r in writer.records] == [1]


def test_messages_come_in_id_order_with_the_id_header_first(impl: ModuleType) -> None:
    writer = new_writer(impl)
    write_all(writer, [bill(7, ext="8002"), bill(3), bill(5, ext="8002")])
    messages = writer.messages("cdr.calls", HEADERS, impl.RecordTallies())
    assert [decode(m.value)["id"] for m in messages] == [3, 5, 7]
    assert [m.key for m in messages] == [b"8001", b"8002", b"8002"]
    assert {m.topic for m in messages} == {"cdr.calls"}
    assert messages[0].headers == [("cdr.id", b"3"), *HEADERS]
    assert messages[0].timestamp_ms == decode(messages[0].value)["endtime"]


def test_tallies_put_a_record_in_the_hour_the_checkpoint_counts_it_in(impl: ModuleType) -> None:
    """The audit compares the checkpoint's hours with the vendor's; the tallies feed them."""
    starts = [0, 1, HOUR - 1, HOUR, HOUR + 1, utc_ms(2026, 11, 26, 23, 59, 59) + 999, -1, -HOUR]
    tallies = impl.RecordTallies()
    for start in starts:
        tallies.add(EncodedRecord(1, b"k", b"v", start, start, False, "callout", 3, 0, 0))
    expected: dict[int, int] = {}
    for start in starts:
        expected[hour_start(start)] = expected.get(hour_start(start), 0) + 1
    assert tallies.start_hours == expected


def test_tallies_add_up_the_records_by_hour_kind_and_direction(impl: ModuleType) -> None:
    bills = [
        bill(1, starttime="2026-11-26 10:00:00", endtime="2026-11-26 10:01:00", billsec=55),
        bill(2, starttime="2026-11-26 10:59:00", answertime="2026-11-26 10:59:05",
             endtime="2026-11-26 11:00:10", duration=70, billsec=60),
        bill(3, starttime="2026-11-26 11:30:00", answertime="", endtime="2026-11-26 11:30:20",
             duration=20, billsec=0, direction="callin", callmethod=1),
    ]  # fmt: skip
    writer = new_writer(impl)
    write_all(writer, bills)
    assert writer.failures == []
    tallies = impl.RecordTallies()
    writer.messages("cdr.calls", HEADERS, tallies)
    # Shanghai is UTC+8: dialled in the hours from 02:00 and 03:00 UTC.
    assert tallies.start_hours == {utc_ms(2026, 11, 26, 2): 2, utc_ms(2026, 11, 26, 3): 1}
    assert tallies.calls == {("callout", 3, True): 2, ("callin", 1, False): 1}
    assert tallies.billed_seconds == {"callout": 115, "callin": 0}
    assert tallies.newest_end_ms == utc_ms(2026, 11, 26, 3, 30, 20)
    assert tallies.unknown_fields == 0
    now = utc_ms(2026, 11, 26, 3, 0, 10) / 1000 + 5  # 5 s after the second call ended
    assert sorted(tallies.latencies(now)) == [0.0, 5.0, 3555.0]


def test_a_record_with_fields_the_schema_does_not_know_is_counted(impl: ModuleType) -> None:
    writer = new_writer(impl)
    write_all(writer, [bill(1, newfield="x", other=2), bill(2)])
    tallies = impl.RecordTallies()
    writer.messages("cdr.calls", HEADERS, tallies)
    assert tallies.unknown_fields == 2


def test_an_empty_batch_tallies_nothing(impl: ModuleType) -> None:
    writer = new_writer(impl)
    tallies = impl.RecordTallies()
    assert writer.messages("cdr.calls", HEADERS, tallies) == []
    assert (tallies.newest_end_ms, tallies.latencies(0.0), tallies.calls) == (0, [], {})


def test_the_source_build_says_it_is_not_compiled() -> None:
    assert BUILDS["source"].is_compiled() is False
    assert batch_writer.is_compiled() is (Path(batch_writer.__file__).suffix == ".so")


def test_a_compiled_batch_writer_is_built_from_the_current_source() -> None:
    builds.assert_built_from_current_source(batch_writer)


def figures(tallies: Any) -> tuple[Any, ...]:
    return (
        sorted(tallies.end_times_ms),
        tallies.start_hours,
        tallies.calls,
        tallies.billed_seconds,
        tallies.unknown_fields,
    )


def test_messages_may_be_asked_for_twice_without_counting_the_records_twice(
    impl: ModuleType,
) -> None:
    writer = new_writer(impl)
    write_all(writer, [bill(3, newfield="x"), bill(1), bill(2, ext="8002")])
    tallies = impl.RecordTallies()
    first = writer.messages("cdr.calls", HEADERS, tallies)
    once = figures(tallies)
    assert once[2] == {("callout", 3, True): 3} and once[4] == 1
    second = writer.messages("cdr.calls", HEADERS, tallies)
    assert second == first
    assert figures(tallies) == once
    assert [r.id for r in writer.records] == [3, 1, 2], "messages() leaves the records as written"


def test_the_writer_keeps_its_own_tallies_and_hands_over_copies(impl: ModuleType) -> None:
    writer = new_writer(impl)
    write_all(writer, [bill(1), bill(2, billsec=7, duration=9)])
    given = impl.RecordTallies()
    given.add(EncodedRecord(99, b"k", b"v", 0, 0, False, "callin", 1, 0, 5))  # another batch's
    writer.messages("cdr.calls", HEADERS, given)
    assert figures(given) == figures(writer.tallies)
    given.calls.clear()
    given.end_times_ms.append(1)
    assert writer.tallies.calls == {("callout", 3, True): 2}
    assert len(writer.tallies.end_times_ms) == 2
