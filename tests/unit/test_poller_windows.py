"""Where the poller's windows begin and end, which hours it audits, and what it stamps on
what it hands on: the values the live stream, the sweeps and the audit rely on, apart from
the round strategy (test_poller.py), against the same in-memory vendor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cdr_connector.api import BillPage, BillQuery
from cdr_connector.config import PollSettings, SourceSettings
from cdr_connector.errors import ApiTransientError
from cdr_connector.poller import Poller
from cdr_connector.source import SWEEP, RoundFailedError
from tests.fakes import FakeApi, FakeClock, FakeRecorder
from tests.unit.test_poller import collect, ids_of, make_poller

PBX = ZoneInfo("Asia/Shanghai")  # the default source.timezone, UTC+8 all year
MIDNIGHT = 1_699_920_000  # 2023-11-14 00:00:00 UTC
HOUR = 3600


class RecordingVendor(FakeApi):
    """The in-memory vendor, keeping every query as the poller built it."""

    def __init__(self, count: int) -> None:
        super().__init__(count)
        self.queries: list[BillQuery] = []

    async def get_bills(self, query: BillQuery) -> BillPage:
        self.queries.append(query)
        return await super().get_bills(query)


def poller_at(vendor: FakeApi, now: float, **poll: Any) -> Poller:
    source = SourceSettings(appid="a", accesskey="k")
    return Poller(
        vendor, source, PollSettings(**({"page_size": 10} | poll)), FakeClock(now), FakeRecorder()
    )


def utc(hour: int) -> datetime:
    return datetime(2023, 11, 14, hour, tzinfo=UTC)


# --- windows -----------------------------------------------------------------------------


async def test_live_and_sweep_windows_end_an_hour_past_the_clock_in_the_pbx_zone() -> None:
    """The hour of margin covers a PBX clock ahead of ours; the live cycle asks for exactly
    the live window."""
    vendor = RecordingVendor(3)
    poller = poller_at(vendor, MIDNIGHT + 0.5, lookback_seconds=2 * HOUR, sweep_window_seconds=900)
    now = datetime(2023, 11, 14, 8, 0, 0, 500_000, tzinfo=PBX)
    assert poller.live_window() == (now - timedelta(hours=2), now + timedelta(hours=1))
    assert poller.sweep_window() == (now - timedelta(minutes=15), now + timedelta(hours=1))
    assert poller.live_window()[1].utcoffset() == timedelta(hours=8)
    await collect(poller)
    assert {(q.start, q.end) for q in vendor.queries} == {poller.live_window()}


@pytest.mark.parametrize("count", [10, 11], ids=["one full page", "one record more"])
@pytest.mark.parametrize("marks", [True, False], ids=["marking", "not marking"])
async def test_a_backlog_at_a_page_boundary_is_fetched_whole(marks: bool, count: int) -> None:
    """After a full first page the server has one record left, or none: the cycle goes on for
    the one, and ends without a request for nothing."""
    vendor = FakeApi(count, marks=marks)
    batches = await collect(make_poller(vendor, page_size=10))
    assert set(ids_of(batches)) == set(range(1, count + 1))


# --- what is stamped on a batch and a failure -------------------------------------------


async def test_batches_are_stamped_with_the_clock_in_milliseconds() -> None:
    vendor = FakeApi(5)
    poller = poller_at(vendor, 1_700_000_000.25)
    live = await collect(poller)
    sweep = [b async for b in poller.listing(*poller.sweep_window(), SWEEP)]
    assert {b.fetched_at_ms for b in live + sweep} == {1_700_000_000_250}


async def test_a_failed_round_carries_the_failure_as_its_message() -> None:
    vendor = FakeApi(50)
    vendor.fail_next = [ApiTransientError("App.Sip_Cdr.GetBill: HTTP 503: busy")]
    with pytest.raises(RoundFailedError) as failed:
        await collect(make_poller(vendor))
    assert str(failed.value) == "App.Sip_Cdr.GetBill: HTTP 503: busy"


# --- the audit -----------------------------------------------------------------------------


async def test_count_asks_for_every_record_of_the_window_in_one_page_of_one() -> None:
    """syncflag=3 counts all records, queried or not, and marks none."""
    vendor = RecordingVendor(25)
    vendor.queried.update(range(1, 6))  # five already read by the live stream
    poller = poller_at(vendor, MIDNIGHT)
    start = datetime(2023, 11, 14, 10, tzinfo=PBX)
    end = start + timedelta(seconds=HOUR - 1)
    assert await poller.count(start, end) == 25
    (query,) = vendor.queries
    assert (query.syncflag, query.page, query.page_size) == (3, 1, 1)
    assert (query.start, query.end) == (start, end)
    assert vendor.queried == set(range(1, 6))


@pytest.mark.parametrize(
    ("now", "lookback", "settle", "hours"),
    [
        # Lookback from 04:30: 05:00 is its first whole hour, 06:00 one hour inside it.
        # Settled until 10:20: 09:00-10:00 is closed, 10:00-11:00 is not.
        (MIDNIGHT + 10 * HOUR + 1800, 6 * HOUR, 600, [6, 7, 8, 9]),
        # At the edges: the lookback starts at 04:00 exactly, 09:00-10:00 ended exactly
        # `settle` ago.
        (MIDNIGHT + 10 * HOUR + 600, 6 * HOUR + 600, 600, [5, 6, 7, 8, 9]),
    ],
    ids=["inside", "at the edges"],
)
def test_audited_hours_are_the_closed_hours_one_hour_inside_the_lookback(
    now: float, lookback: float, settle: float, hours: list[int]
) -> None:
    poller = poller_at(FakeApi(0), now, lookback_seconds=lookback, audit_settle_seconds=settle)
    audited = poller.audit_hours()
    assert audited == [utc(hour) for hour in hours]
    assert {start.tzinfo for start in audited} == {UTC}


def test_an_audited_hour_is_its_own_3600_seconds_in_the_pbx_zone() -> None:
    """Inclusive to the second, so it ends one second before the next hour begins."""
    poller = poller_at(FakeApi(0), MIDNIGHT)
    start, end = poller.local_hour(utc(6))
    assert start == datetime(2023, 11, 14, 14, 0, 0, tzinfo=PBX)
    assert end == datetime(2023, 11, 14, 14, 59, 59, tzinfo=PBX)
    assert start.utcoffset() == end.utcoffset() == timedelta(hours=8)
    next_start, _ = poller.local_hour(utc(7))
    assert next_start - end == timedelta(seconds=1)
