"""`normalise` at the edges of its time rules: calls of no length and answers at the first
second, around the changes of offset of a zone with daylight saving time."""

from __future__ import annotations

import pytest

from cdr_connector.bill import UnreadableBill
from cdr_connector.errors import RecordError
from cdr_connector.records import normalise
from tests.unit.test_records import NEW_YORK, answered, context, utc_ms


def test_an_unreadable_bill_is_a_parse_error_naming_the_reason() -> None:
    unreadable = UnreadableBill(raw=b'{"id": NaN}', reason="NaN is not JSON")
    with pytest.raises(RecordError, match=r"not readable JSON \(NaN is not JSON\)") as caught:
        normalise(unreadable, context())
    assert caught.value.stage == "parse"


def test_a_call_of_no_length_in_the_repeated_hour_ends_when_it_starts() -> None:
    # 2024-11-03 01:00-02:00 happens twice in New York; both times read as the first pass.
    bill = answered(
        starttime="2024-11-03 01:30:00",
        answertime=None,
        endtime="2024-11-03 01:30:00",
        duration=0,
        billsec=0,
    )
    record = normalise(bill, context(NEW_YORK))
    assert record["starttime"] == record["endtime"] == utc_ms(2024, 11, 3, 5, 30)


def test_a_call_answered_at_its_first_second_in_the_repeated_hour_keeps_that_answer() -> None:
    bill = answered(
        starttime="2024-11-03 01:10:00",
        answertime="2024-11-03 01:10:00",
        endtime="2024-11-03 01:20:00",
        duration=600,
        billsec=600,
    )
    record = normalise(bill, context(NEW_YORK))
    assert record["answertime"] == record["starttime"] == utc_ms(2024, 11, 3, 5, 10)


def test_an_answer_in_the_skipped_hour_may_fall_on_the_start() -> None:
    # 02:00-03:00 does not exist on 2024-03-10 in New York: 02:30 read after the change is
    # 06:30 UTC, the call's start (01:30 EST), and so within the call.
    bill = answered(
        starttime="2024-03-10 01:30:00",
        answertime="2024-03-10 02:30:00",
        endtime="2024-03-10 03:20:00",
        duration=600,
        billsec=600,
    )
    record = normalise(bill, context(NEW_YORK))
    assert record["answertime"] == record["starttime"] == utc_ms(2024, 3, 10, 6, 30)


def test_a_call_answered_at_its_last_second_in_the_repeated_hour_keeps_that_answer() -> None:
    bill = answered(
        starttime="2024-11-03 01:10:00",
        answertime="2024-11-03 01:20:00",
        endtime="2024-11-03 01:20:00",
        duration=600,
        billsec=0,
    )
    record = normalise(bill, context(NEW_YORK))
    assert record["answertime"] == record["endtime"] == utc_ms(2024, 11, 3, 5, 20)


def test_an_answer_in_the_skipped_hour_may_fall_on_the_end() -> None:
    # 02:30 read after the change is 06:30 UTC, the call's end (01:30 EST).
    bill = answered(
        starttime="2024-03-10 01:00:00",
        answertime="2024-03-10 02:30:00",
        endtime="2024-03-10 01:30:00",
        duration=1800,
        billsec=0,
    )
    record = normalise(bill, context(NEW_YORK))
    assert record["answertime"] == record["endtime"] == utc_ms(2024, 3, 10, 6, 30)
