"""The simulator's local-time texts, memoised, against the standard library's own."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from cdr_connector.simulator import localtime
from cdr_connector.simulator.localtime import LocalTime

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")


def expected(unix: int) -> str:
    return dt.datetime.fromtimestamp(unix, BERLIN).strftime("%Y-%m-%d %H:%M:%S")


def test_texts_stay_right_past_the_memo_bound_and_across_an_offset_change() -> None:
    clock = LocalTime(BERLIN)
    # 2026-10-25 01:00 UTC: Berlin goes back from +02:00 to +01:00.
    change = int(dt.datetime(2026, 10, 25, 1, tzinfo=dt.UTC).timestamp())
    seconds = range(change - localtime.MEMO_LIMIT, change + 7_200)
    for _ in range(2):  # the second pass reads what the first one memoised
        for unix in seconds:
            assert clock.format(unix) == expected(unix), unix
    assert 0 < clock.memoised <= localtime.MEMO_LIMIT


def test_stamp_is_the_text_without_separators() -> None:
    clock = LocalTime(BERLIN)
    for unix in (0, 1_700_000_000, 1_700_000_000 + 86_399):
        text = clock.format(unix)
        assert clock.stamp(unix) == text.replace("-", "").replace(":", "").replace(" ", "")
        assert clock.stamp(unix) == clock.stamp(unix)
