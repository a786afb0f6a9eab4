"""The bounds of `bill.sound_call`, the one statement of the rules both writers apply, and the
local hours a `LocalClock` keeps."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cdr_connector import bill as b

FETCHED_AT_MS = 1_900_000_000_000
START_MS = 1_800_000_000_000
SOUND: dict[str, Any] = {
    "record_id": 22670,
    "start_ms": START_MS,
    "answer_ms": START_MS + 5_000,
    "end_ms": START_MS + 65_000,
    "duration": 65,
    "billsec": 60,
    "callmethod": 1,
    "hangupdirection": 0,
    "hangupcause": 16,
    "fetched_at_ms": FETCHED_AT_MS,
}


def sound(**changes: Any) -> bool:
    values = {**SOUND, **changes}
    return b.sound_call(*values.values())


def test_the_example_call_is_sound() -> None:
    assert sound()
    assert sound(billsec=0, duration=0, answer_ms=None)


@pytest.mark.parametrize("field", ["billsec", "duration"])
def test_a_negative_talk_time_or_duration_is_not_sound(field: str) -> None:
    assert not sound(**{field: -1})


def test_billsec_may_exceed_duration_by_the_slack_only() -> None:
    assert sound(billsec=65 + b.BILLSEC_SLACK_SECONDS)
    assert not sound(billsec=66 + b.BILLSEC_SLACK_SECONDS)


def test_a_clock_keeps_every_hour_it_has_read() -> None:
    clock = b.LocalClock(ZoneInfo("Asia/Shanghai"))
    first = clock.to_utc_ms("2024-05-01 10:15:00")
    second = clock.to_utc_ms("2024-05-01 11:15:00")
    assert second - first == 3_600_000
    assert set(clock.hours) == {"2024-05-01 10:", "2024-05-01 11:"}
    assert clock.hours["2024-05-01 10:"] * 1000 == first - 15 * 60_000


def test_the_hours_kept_are_bounded() -> None:
    clock = b.LocalClock(ZoneInfo("Asia/Shanghai"), max_hours=3)
    for hour in range(5):
        clock.to_utc_ms(f"2024-05-01 {hour:02d}:00:00")
        assert 1 <= len(clock.hours) <= 3
    assert "2024-05-01 04:" in clock.hours


def test_a_value_shown_in_an_error_is_cut_only_past_the_limit() -> None:
    fits = "x" * (b.MAX_SHOWN - 2)  # its repr adds two quotes
    assert b.show(fits) == repr(fits)
    longer = fits + "x"
    assert b.show(longer) == repr(longer)[: b.MAX_SHOWN - 3] + "..."
    assert len(b.show(longer)) == b.MAX_SHOWN


def problem(**changes: Any) -> str:
    values = {**SOUND, **changes}
    return str(
        b.call_problem(
            {"starttime": "2027-01-15 08:00:00", "endtime": "2030-03-17 17:46:40"},
            start_ms=values["start_ms"],
            end_ms=values["end_ms"],
            duration=values["duration"],
            billsec=values["billsec"],
            fetched_at_ms=values["fetched_at_ms"],
        )
    )


def test_the_problem_named_is_the_end_only_past_a_day_after_the_fetch() -> None:
    at_bound = FETCHED_AT_MS + b.MAX_END_AHEAD_MS
    assert problem(end_ms=at_bound) == "the bill's numbers or times are inconsistent"
    assert problem(end_ms=at_bound + 1) == (
        "field 'endtime': '2030-03-17 17:46:40' is more than a day after the bill was fetched"
    )


def test_the_dial_time_of_a_bill_the_audit_counts_is_read_in_the_accounts_zone() -> None:
    shanghai = ZoneInfo("Asia/Shanghai")  # UTC+8 all year
    fetched = 1_715_000_000_000  # 2024-05-06
    # 2024-05-01 10:00:00 in Shanghai is 02:00:00 UTC.
    assert b.dial_time_ms({"starttime": "2024-05-01 10:00:00"}, shanghai, fetched) == (
        1_714_528_800_000
    )
    assert b.dial_time_ms({"starttime": "not a time"}, shanghai, fetched) is None
    assert b.dial_time_ms({"starttime": 1_714_528_800}, shanghai, fetched) is None
    assert b.dial_time_ms(["starttime", "2024-05-01 10:00:00"], shanghai, fetched) is None
    # Before 2000, or more than a day after it was fetched: not believable.
    assert b.dial_time_ms({"starttime": "1999-12-31 23:00:00"}, shanghai, fetched) is None
    assert b.dial_time_ms({"starttime": "2024-05-08 10:00:00"}, shanghai, fetched) is None
