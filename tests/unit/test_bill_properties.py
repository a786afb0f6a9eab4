"""Generated hostile bills against the one definition of a bill (`cdr_connector.bill`).

Three writers must agree on every bill: the compiled one-pass writer, the same module run as
Python source, and the reference path (`records.normalise` + fastavro's generic writer).
Either all three write identical bytes (and the same key and facts), or all three refuse the
bill with a `RecordError`; and the batch writer never raises, whatever a batch holds.

The bills are a well-formed bill with any of its fields replaced by what a broken or hostile
vendor might send: ids and integers at and beyond every bound, in every JSON form; times at
the plausibility bounds, in other formats, across daylight saving changes; texts with
non-ASCII, lone surrogates and lengths around the limits; unknown and missing fields.

`CDR_PROPERTY_EXAMPLES` sets the number of examples of the main property: 10,000 by default
(about 35 s on 2 cores), 100,000 for the long run (about 6 minutes, beyond the per-test
timeout, so run it with `--timeout 0`). Derandomized, so every run draws the same bills.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdr_connector import batch_writer, bill_writer
from cdr_connector.avro import SingleObjectEncoder
from cdr_connector.bill import (
    EARLIEST_START_MS,
    ID_MAX,
    INT_MAX,
    INT_MIN,
    MAX_END_AHEAD_MS,
    MAX_TEXT_BYTES,
    UnreadableBill,
    clock_for,
)
from cdr_connector.bill_writer import EncodedRecord
from cdr_connector.checkpoint import CommittedIds
from cdr_connector.errors import RecordError
from cdr_connector.records import RecordContext
from tests.fakes import bill
from tests.unit import builds
from tests.unit.test_bill_writer import general

EXAMPLES = int(os.environ.get("CDR_PROPERTY_EXAMPLES", "10000"))
ZONES = (ZoneInfo("Asia/Shanghai"), ZoneInfo("America/New_York"))
# 2026-11-26 13:33Z; the base bill's call ended hours before.
FETCHED_AT_MS = 1_795_700_000_000
WRITERS = builds.both(bill_writer)
BATCH_WRITERS = builds.both(batch_writer)
ENCODER = SingleObjectEncoder()

BASE: dict[str, Any] = bill(22670)

_BOUNDS = (0, 1, -1, INT_MAX, INT_MAX + 1, INT_MIN, INT_MIN - 1, ID_MAX, ID_MAX + 1, 2**64)
integers = st.one_of(
    st.sampled_from(_BOUNDS),
    st.integers(min_value=-(2**65), max_value=2**65),
    st.integers(min_value=-5, max_value=100_000),
)
digit_strings = st.one_of(
    integers.map(str),
    st.text("0123456789", min_size=0, max_size=25),
    st.sampled_from(
        ["٣", "²", "\uff11\uff12", " 7", "7 ", "+7", "1_000", "12.5", "-0", "0x10", "9" * 400]
    ),
)
floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    integers.map(float),
)
times = st.one_of(
    st.sampled_from(
        [
            "2026-11-26 10:00:00", "2026-11-26 09:59:59", "2026-11-27 21:33:19",
            "2026-11-27 21:33:20", "2026-11-27 21:33:21", "1999-12-31 23:59:59",
            "2000-01-01 00:00:00", "2000-01-01 08:00:00", "2099-12-31 23:59:59",
            "2026-03-08 02:30:00", "2026-11-01 01:30:00", "0000-00-00 00:00:00", "",
            "2023-02-30 10:00:00", "2026/11/26 10:00:00", "2026-11-26T10:00:00",
            "2026-11-26 10:00:00+08:00", "2026-11-26 24:00:00", "2026-11-26 10:60:00",
        ]
    ),
    st.datetimes().map(lambda moment: moment.strftime("%Y-%m-%d %H:%M:%S")),
)  # fmt: skip
texts = st.one_of(
    st.text(max_size=20),
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=3),
    st.sampled_from(["x" * (MAX_TEXT_BYTES - 1), "x" * MAX_TEXT_BYTES, "x" * (MAX_TEXT_BYTES + 1)]),
    st.sampled_from(["é" * 4095, "é" * (MAX_TEXT_BYTES // 2 + 1), "\x00", "callin", "callout"]),
)
values = st.one_of(
    integers, digit_strings, floats, times, texts, st.none(), st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)  # fmt: skip
fields = st.sampled_from(sorted(BASE))


@st.composite
def hostile_bills(draw: st.DrawFn) -> Any:
    """The base bill with some fields replaced, removed or added; now and then not a bill."""
    if draw(st.integers(0, 50)) == 0:
        return draw(st.one_of(values, st.just(UnreadableBill(b'{"id":1,NaN}', "NaN", 1))))
    bill = dict(BASE)
    for _ in range(draw(st.integers(0, 4))):
        field = draw(fields)
        kind = draw(st.integers(0, 9))
        if kind == 0:
            bill.pop(field, None)
        elif field in ("starttime", "endtime", "answertime") and kind < 7:
            bill[field] = draw(times)
        elif field in ("id", "duration", "billsec", "callmethod") and kind < 7:
            bill[field] = draw(st.one_of(integers, digit_strings))
        else:
            bill[field] = draw(values)
    if draw(st.integers(0, 20)) == 0:
        bill[draw(st.text(min_size=1, max_size=8))] = draw(values)
    return bill


def warm_hours(bill: Any, zone: ZoneInfo) -> None:
    """Cache the hours of the bill's times, as earlier bills would have: the one-pass writer
    takes only bills whose hours are cached, and it must judge them as the reference does."""
    if not isinstance(bill, dict):
        return
    clock = clock_for(zone)
    for field in ("starttime", "endtime", "answertime"):
        text = bill.get(field)
        if isinstance(text, str):
            with contextlib.suppress(ValueError):
                clock.to_utc_ms(text)


def outcome(write: Any, bill: Any) -> EncodedRecord | str:
    try:
        result: EncodedRecord = write(bill)
    except RecordError:
        return "refused"
    return result


def outcomes(bill: Any, zone: ZoneInfo, fetched_at_ms: int) -> list[EncodedRecord | str]:
    context = RecordContext("acme", zone, fetched_at_ms, "live")
    found: list[EncodedRecord | str] = [
        outcome(lambda b: general(b, context, ENCODER, "displaynumber"), bill)
    ]
    for module in WRITERS.values():
        writer = module.BillWriter(ENCODER, context, "displaynumber")
        found.append(outcome(writer.write, bill))
    return found


@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@given(
    bill=hostile_bills(),
    zone=st.sampled_from(ZONES),
    warm=st.booleans(),
    fetched_offset_s=st.sampled_from([0, 60, 86_400, -86_400, 10 * 86_400]),
)
def test_the_fast_writer_both_builds_and_the_reference_agree_on_every_bill(
    bill: Any, zone: ZoneInfo, warm: bool, fetched_offset_s: int
) -> None:
    if warm:
        warm_hours(bill, zone)
    reference, *writers = outcomes(bill, zone, FETCHED_AT_MS + fetched_offset_s * 1000)
    for found in writers:
        assert found == reference, (bill, found, reference)


def test_the_rules_hold_at_their_bounds_in_every_writer() -> None:
    """The plausibility bounds, exactly at and one step past each edge, for both paths."""
    zone = ZONES[0]
    end_text = "2026-11-26 10:01:00"
    end_ms = clock_for(zone).to_utc_ms(end_text)
    cases: list[tuple[dict[str, Any], int, bool]] = [
        ({}, end_ms - MAX_END_AHEAD_MS, True),
        ({}, end_ms - MAX_END_AHEAD_MS - 1000, False),
        ({"starttime": "2000-01-01 08:00:00"}, FETCHED_AT_MS, True),  # 00:00Z
        ({"starttime": "2000-01-01 07:59:59"}, FETCHED_AT_MS, False),
        ({"duration": -1, "billsec": 0}, FETCHED_AT_MS, False),
        ({"duration": 0, "billsec": -1}, FETCHED_AT_MS, False),
        ({"duration": 0, "billsec": 0, "answertime": None}, FETCHED_AT_MS, True),
        ({"duration": INT_MAX, "billsec": INT_MAX + 1}, FETCHED_AT_MS, False),
        ({"duration": INT_MAX, "billsec": INT_MAX}, FETCHED_AT_MS, True),
        ({"id": ID_MAX}, FETCHED_AT_MS, True),
        ({"id": str(ID_MAX)}, FETCHED_AT_MS, True),
        ({"id": ID_MAX + 1}, FETCHED_AT_MS, False),
        ({"id": "0"}, FETCHED_AT_MS, False),
    ]
    assert clock_for(zone).to_utc_ms("2000-01-01 08:00:00") == EARLIEST_START_MS
    for changes, fetched_at_ms, sound in cases:
        bill = BASE | changes
        warm_hours(bill, zone)
        found = outcomes(bill, zone, fetched_at_ms)
        # Each build has its own EncodedRecord class: a refusal is the string "refused".
        assert all((f != "refused") == sound for f in found), (changes, found)
        assert found[1] == found[0] and found[2] == found[0], changes


@settings(
    max_examples=max(EXAMPLES // 50, 1000),
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@given(bills=st.lists(hostile_bills(), max_size=30))
def test_the_batch_writer_never_raises_and_accounts_for_every_bill(bills: list[Any]) -> None:
    context = RecordContext("acme", ZONES[0], FETCHED_AT_MS, "live")
    for name, module in BATCH_WRITERS.items():
        writer = module.BatchWriter(
            WRITERS["imported" if name == "imported" else "source"].BillWriter(ENCODER, context),
            CommittedIds(),
            1 << 20,
        )
        writer.write(bills, 0, len(bills))
        accounted = len(writer.records) + len(writer.failures) + writer.deduplicated
        assert accounted == len(bills), name
        assert all(1 <= i <= ID_MAX for i in writer.new_ids)
