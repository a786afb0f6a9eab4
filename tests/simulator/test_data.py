"""The generated records: realistic, reproducible from the seed, visible only once the call
has ended (so late records carry old start times), and produced live at the configured rate."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

from cdr_connector.simulator import ManualClock
from tests.simulator.conftest import T0, Client, StartSimulator, advance

Bill = dict[str, Any]
# README.md's code table.
CODES = {
    10001, 10002, 10003, 10004, 10005, 10006, 10007, 10008, 10009, 10011, 10012, 10013, 10014,
    10015, 10016, 10017, 10019, 10020, 10024, 10025, 10027, 10028, 10031, 10040, 10041,
}  # fmt: skip


def seconds(text: str) -> float:
    return dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S").timestamp()


@pytest.fixture
async def sample(start: StartSimulator) -> list[Bill]:
    api = await start(clock=ManualClock(T0), backlog=20_000)
    return await api.all_records()


def test_ids_increase_without_gaps(sample: list[Bill]) -> None:
    assert [bill["id"] for bill in sample] == list(range(1, 20_001))


def test_times_are_consistent(sample: list[Bill]) -> None:
    for bill in sample:
        start, end = seconds(bill["starttime"]), seconds(bill["endtime"])
        assert end - start == bill["duration"]
        if bill["answertime"] is None:
            assert bill["billsec"] == 0
        else:
            assert end - seconds(bill["answertime"]) == bill["billsec"] > 0
            assert start <= seconds(bill["answertime"])


def test_every_kind_of_call_occurs(sample: list[Bill]) -> None:
    assert {bill["callmethod"] for bill in sample} == {1, 2, 3, 4, 5, 6}
    assert {bill["direction"] for bill in sample} == {"callin", "callout"}
    no_extension = [bill for bill in sample if bill["extnumber"] == ""]
    assert no_extension
    assert {bill["callmethod"] for bill in no_extension} == {6}
    extensions = {bill["extnumber"] for bill in sample} - {""}
    assert extensions == {str(8001 + i) for i in range(50)}
    answered = sum(bill["answertime"] is not None for bill in sample)
    assert 0.4 < answered / len(sample) < 0.85


def test_durations_have_a_long_tail(sample: list[Bill]) -> None:
    talk = sorted(bill["billsec"] for bill in sample if bill["billsec"])
    median = talk[len(talk) // 2]
    assert 30 <= median <= 180
    assert any(seconds_ > 3600 for seconds_ in talk)


def test_hangup_codes_come_from_the_code_table(sample: list[Bill]) -> None:
    causes = {bill["hangupcause"] for bill in sample}
    directions = {bill["hangupdirection"] for bill in sample}
    assert causes <= CODES
    assert directions <= CODES
    assert len(causes) >= 10


def test_custom_fields_include_non_ascii_text(sample: list[Bill]) -> None:
    for field in ("userid", "memberid", "chengshudu", "customuuid"):
        values = {bill[field] for bill in sample}
        assert any(not value.isascii() for value in values), field
    assert any("José" in bill["customuuid"] or "José" in bill["userid"] for bill in sample)


def test_records_arrive_late_with_old_start_times(sample: list[Bill]) -> None:
    """Ids follow the end of the call (and the write-back), not its start: a record can start
    long before records with smaller ids."""
    latest_start = 0.0
    late_by = []
    for bill in sample:
        start = seconds(bill["starttime"])
        late_by.append(latest_start - start)
        latest_start = max(latest_start, start)
    assert max(late_by) > 3600
    assert sum(lag > 60 for lag in late_by) > 50


async def test_same_seed_same_records(start: StartSimulator) -> None:
    runs = []
    for seed in (11, 11, 12):
        api = await start(clock=ManualClock(T0), seed=seed, backlog=500)
        await api.admin("POST", "generate", {"count": 100})
        runs.append(await api.all_records())
    assert len(runs[0]) == 600
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


async def test_generated_records_are_visible_now_and_can_be_late(start: StartSimulator) -> None:
    clock = ManualClock(T0)
    api = await start(clock=clock, backlog=3000)
    await api.login()
    seen = [bill for _ in range(3) for bill in (await api.get_bill(syncflag=1))["bills"]]
    assert len(seen) == 3000
    newest_seen = max(bill["starttime"] for bill in seen)

    await advance(clock, 600)
    made = await api.admin("POST", "generate", {"count": 500})
    assert made == {"first_id": 3001, "last_id": 3500, "count": 500}
    fresh = (await api.get_bill(syncflag=1))["bills"]

    assert [bill["id"] for bill in fresh] == list(range(3001, 3501))
    now = clock.time()
    assert all(seconds_ <= now for seconds_ in (_unix(bill["endtime"]) for bill in fresh))
    # Some new records started before the newest record already read.
    assert any(bill["starttime"] < newest_seen for bill in fresh)


def _unix(text: str) -> float:
    local = dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    return local.replace(tzinfo=dt.timezone(dt.timedelta(hours=8))).timestamp()


async def test_live_generation_runs_at_the_rate(start: StartSimulator) -> None:
    clock = ManualClock(T0)
    api = await start(clock=clock, rate=10.0)
    await advance(clock, 120, step=0.5)

    records = await api.all_records()
    assert 1000 <= len(records) <= 1400  # Poisson: 1200 +- 35
    ends = [_unix(bill["endtime"]) for bill in records]
    assert min(ends) > T0 - 1000
    assert max(ends) <= T0 + 120


async def test_live_generation_pauses_and_resumes(start: StartSimulator) -> None:
    clock = ManualClock(T0)
    api = await start(clock=clock, rate=5.0)
    await advance(clock, 10)
    await api.admin("POST", "pause")
    paused_at = (await api.admin("GET", "stats"))["records"]["visible"]
    assert paused_at > 0

    await advance(clock, 30)
    assert (await api.admin("GET", "stats"))["records"]["visible"] == paused_at
    assert (await api.admin("GET", "stats"))["live"]["paused"] is True

    await api.admin("POST", "resume")
    await advance(clock, 30)
    assert (await api.admin("GET", "stats"))["records"]["visible"] > paused_at + 50


async def test_live_generation_with_the_real_clock(start: StartSimulator) -> None:
    api: Client = await start(rate=200.0)
    for _ in range(100):
        if (await api.admin("GET", "stats"))["records"]["visible"] >= 20:
            return
        await asyncio.sleep(0.02)
    pytest.fail("no live records after 2 s at 200 calls/s")
