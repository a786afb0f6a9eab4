"""Every fault knob, switched at start or through /admin/faults."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import orjson
import pytest

from cdr_connector.simulator import FaultConfig, ManualClock
from tests.simulator.conftest import APPID, LOGIN, T0, Client, StartSimulator, advance


async def stats(api: Client) -> dict[str, Any]:
    answer: dict[str, Any] = await api.admin("GET", "stats")
    return answer


async def test_http_5xx(start: StartSimulator) -> None:
    api = await start(backlog=10)
    await api.login()
    await api.admin("POST", "faults", {"http_5xx_rate": 1.0})

    statuses = [(await api.post_raw(api.bill_fields(syncflag=1))).status for _ in range(20)]

    assert set(statuses) == {502, 503}
    current = await stats(api)
    assert current["faults"]["http_5xx"] == 20
    assert current["records"]["unqueried"] == 10  # nothing was processed
    assert sum(current["requests"]["App.Sip_Cdr.GetBill"][f"http_{s}"] for s in (502, 503)) == 20


async def test_ret_500(start: StartSimulator) -> None:
    api = await start(backlog=10)
    await api.login()
    await api.admin("POST", "faults", {"ret_500_rate": 1.0})

    answer = await api.call(api.bill_fields(syncflag=1))

    assert answer["ret"] == 500
    assert answer["data"]["status"] == 1
    assert (await stats(api))["records"]["unqueried"] == 10


async def test_bad_json_after_the_records_were_marked(start: StartSimulator) -> None:
    api = await start(backlog=100)
    await api.login()
    await api.admin("POST", "faults", {"bad_json_rate": 1.0})

    bodies = []
    for _ in range(10):
        async with api.session.post(
            api.simulator.url, data=api.bill_fields(syncflag=1, itemsperpage=5)
        ) as response:
            assert response.status == 200
            bodies.append(await response.read())

    for body in bodies:
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(body)
    assert len({body[:20] for body in bodies}) > 1  # more than one way of being broken
    assert (await stats(api))["records"]["queried"] == 50


async def test_dropped_connection(start: StartSimulator) -> None:
    api = await start(backlog=10)
    await api.login()
    await api.admin("POST", "faults", {"drop_rate": 1.0})

    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api.post_raw(api.bill_fields(syncflag=1))

    current = await stats(api)
    assert current["faults"]["drop"] == 1
    assert current["records"]["unqueried"] == 10


async def test_slow_answer_outlives_the_client_timeout_but_marks(start: StartSimulator) -> None:
    api = await start(backlog=30, faults=FaultConfig(slow_rate=1.0, slow_seconds=0.6))
    await api.login()  # Login is slow too
    timeout = aiohttp.ClientTimeout(total=0.2)

    began = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        await api.post_raw(api.bill_fields(syncflag=1, itemsperpage=10), timeout=timeout)
    assert time.monotonic() - began < 0.5

    await api.admin("POST", "faults", {"slow_rate": 0.0})
    # The server marked the page although the client never got it.
    assert await api.bill_ids(syncflag=2) == list(range(1, 11))
    assert await api.bill_ids(syncflag=1) == list(range(11, 31))


async def test_slow_answer_arrives_after_slow_seconds(start: StartSimulator) -> None:
    api = await start(faults=FaultConfig(slow_rate=1.0, slow_seconds=0.3))
    began = time.monotonic()
    await api.login()
    assert time.monotonic() - began >= 0.3


async def test_latency_and_jitter_delay_api_but_not_admin(start: StartSimulator) -> None:
    api = await start(faults=FaultConfig(latency_ms=150.0, jitter_ms=100.0))
    began = time.monotonic()
    await api.login()
    elapsed = time.monotonic() - began
    assert 0.15 <= elapsed < 1.0

    began = time.monotonic()
    await stats(api)
    assert time.monotonic() - began < 0.1


async def test_faults_spare_admin_and_recordings(start: StartSimulator) -> None:
    api = await start(backlog=20)
    await api.login()
    await api.admin("POST", "faults", {"http_5xx_rate": 1.0})
    records = await api.all_records()
    assert len(records) == 20
    filename = next(bill["recordfilename"] for bill in records if bill["recordfilename"])
    fields = {"service": "App.Sip_Cdr.GetRecodeFile", "token": api.token, "filename": filename}
    assert (await api.call(fields))["ret"] == 200


async def test_racing_readers_get_the_same_records(start: StartSimulator) -> None:
    api = await start(backlog=50, faults=FaultConfig(racing=True, race_delay_ms=200.0))
    await api.login()

    first, second = await asyncio.gather(
        api.bill_ids(syncflag=1, itemsperpage=10), api.bill_ids(syncflag=1, itemsperpage=10)
    )

    assert first == second == list(range(1, 11))
    assert (await stats(api))["faults"]["racing"] == 2


async def test_without_racing_concurrent_readers_split_the_records(start: StartSimulator) -> None:
    api = await start(backlog=50, faults=FaultConfig(latency_ms=50.0))
    await api.login()
    first, second = await asyncio.gather(
        api.bill_ids(syncflag=1, itemsperpage=10), api.bill_ids(syncflag=1, itemsperpage=10)
    )
    assert sorted(first + second) == list(range(1, 21))


async def test_competing_reader_takes_records_that_stay_visible(start: StartSimulator) -> None:
    clock = ManualClock(T0)
    api = await start(clock=clock, backlog=100)
    await api.login()
    await api.admin("POST", "faults", {"competitor_interval": 10.0, "competitor_batch": 7})

    await advance(clock, 9)
    assert (await stats(api))["records"]["taken_by_competitor"] == 0
    await advance(clock, 1)
    assert (await stats(api))["records"]["taken_by_competitor"] == 7
    await advance(clock, 10)
    assert (await stats(api))["records"]["taken_by_competitor"] == 14

    assert await api.bill_ids(syncflag=2) == list(range(1, 15))
    assert (await api.get_bill(syncflag=3))["totalitems"] == 100
    mine = await api.get_bill(syncflag=1)
    assert mine["totalitems"] == 86
    assert [bill["id"] for bill in mine["bills"]] == list(range(15, 101))

    await api.admin("POST", "faults", {"competitor_interval": 0})
    await advance(clock, 60)
    assert (await stats(api))["records"]["taken_by_competitor"] == 14


async def test_fault_decisions_follow_the_seed(start: StartSimulator) -> None:
    async def outcomes(api: Client) -> list[int]:
        fields = {"service": LOGIN, "appid": APPID, "accesskey": "x"}
        seen = []
        for _ in range(30):
            try:
                seen.append((await api.post_raw(fields)).status)
            except aiohttp.ServerDisconnectedError:
                seen.append(0)
        return seen

    faults = FaultConfig(http_5xx_rate=0.3, drop_rate=0.3)
    runs = [await outcomes(await start(seed=5, faults=faults)) for _ in range(2)]
    other = await outcomes(await start(seed=6, faults=faults))
    assert runs[0] == runs[1]
    assert {0, 200, 502} <= set(runs[0]) or {0, 200, 503} <= set(runs[0])
    assert other != runs[0]
