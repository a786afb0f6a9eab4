"""The ways of reading a window (`source.Fetch`): the syncflag each asks the vendor for, the
mode its records are labelled with, and that only the live read may mark."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from cdr_connector.config import PollSettings, SourceSettings
from cdr_connector.poller import Poller
from cdr_connector.source import AUDIT, BACKFILL, LIVE, SWEEP, Fetch, FetchedBatch, RoundFailedError
from tests.fakes import FakeApi, FakeClock, FakeRecorder
from tests.unit.test_poller_windows import RecordingVendor

START = datetime(2026, 11, 26, 10, tzinfo=ZoneInfo("Asia/Shanghai"))
END = START + timedelta(seconds=3599)


def poller(vendor: FakeApi) -> Poller:
    source = SourceSettings(appid="a", accesskey="k")
    return Poller(vendor, source, PollSettings(page_size=10), FakeClock(), FakeRecorder())


@pytest.mark.parametrize(
    ("fetch", "syncflag", "mode"),
    [(SWEEP, 2, "sweep"), (AUDIT, 3, "audit"), (BACKFILL, 3, "backfill")],
)
async def test_a_listing_asks_for_its_syncflag_and_labels_its_batches(
    fetch: Fetch, syncflag: int, mode: str
) -> None:
    vendor = RecordingVendor(4)
    vendor.queried.update(range(1, 5))  # read once by the live stream: a sweep lists them
    batches = [b async for b in poller(vendor).listing(START, END, fetch)]
    assert {q.syncflag for q in vendor.queries} == {syncflag}
    assert [b.mode for b in batches] == [mode]
    assert [bill["id"] for bill in batches[0].bills] == [1, 2, 3, 4]


async def test_no_listing_may_mark_so_a_live_listing_is_refused() -> None:
    vendor = RecordingVendor(4)
    with pytest.raises(ValueError, match="syncflag 2 or 3, not 1"):
        _ = [b async for b in poller(vendor).listing(START, END, LIVE)]
    assert vendor.queries == []


def test_only_the_live_read_marks_what_it_returns() -> None:
    assert LIVE.marks
    assert (LIVE.mode, LIVE.syncflag) == ("live", 1)
    assert not any(f.marks for f in (SWEEP, AUDIT, BACKFILL))


def test_a_failed_round_reads_as_its_cause_and_keeps_the_bills_that_came() -> None:
    batch = FetchedBatch("live", [{"id": 1}], 5)
    cause = TimeoutError("GetBill: no answer in 10 s")
    failed = RoundFailedError(batch, cause)
    assert str(failed) == "GetBill: no answer in 10 s"
    assert (failed.batch, failed.cause) == (batch, cause)
