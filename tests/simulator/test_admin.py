"""/admin/: faults, injection, generation, stats and the record listing."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from cdr_connector.simulator import FaultConfig
from tests.simulator.conftest import LOGIN, Client, StartSimulator, as_served


async def test_faults_read_and_partial_update(client: Client) -> None:
    assert await client.admin("GET", "faults") == FaultConfig().as_dict()

    updated = await client.admin("POST", "faults", {"drop_rate": 0.25, "racing": True})

    assert updated == FaultConfig(drop_rate=0.25, racing=True).as_dict()
    assert await client.admin("GET", "faults") == updated
    again = await client.admin("POST", "faults", {"latency_ms": 5})
    assert again == {**updated, "latency_ms": 5}


@pytest.mark.parametrize(
    ("payload", "named"),
    [
        ({"drop_rate": 0.1, "explode_rate": 1}, "explode_rate"),
        ({"drop_rate": 1.5}, "drop_rate"),
        ({"drop_rate": "0.5"}, "drop_rate"),
        ({"racing": 1}, "racing"),
        ({"latency_ms": -1}, "latency_ms"),
        ({"slow_seconds": True}, "slow_seconds"),
        ({"competitor_batch": 0}, "competitor_batch"),
        ({"competitor_batch": 2.5}, "competitor_batch"),
        ([1, 2], "object"),
    ],
)
async def test_faults_update_is_validated(client: Client, payload: Any, named: str) -> None:
    status, answer = await client.admin_status("POST", "faults", payload)
    assert status == 400
    assert named in answer["error"]
    assert await client.admin("GET", "faults") == FaultConfig().as_dict()


async def test_admin_refuses_a_body_that_is_not_json(client: Client) -> None:
    url = client.simulator.admin_url + "faults"
    async with client.session.post(url, data=b"{drop_rate: 1}") as response:
        assert response.status == 400
        assert "JSON" in (await response.json())["error"]


async def test_injected_bills_are_served_as_given(client: Client) -> None:
    raw: list[dict[str, Any]] = [
        {"starttime": "2024-05-01 10:00:00", "duration": "long", "extnumber": 8001},
        {"id": "custom-id", "starttime": "2024-13-45 99:99:99", "nested": {"a": [1, None]}},
        {"note": "no fields at all"},
    ]
    ids = (await client.admin("POST", "inject", raw))["ids"]
    assert ids == [1, 2, 3]
    assert (await client.admin("POST", "inject", {"one": 1}))["ids"] == [4]

    bills = (await client.get_bill())["bills"]

    assert bills == [
        {"id": 1, **raw[0]},
        raw[1],  # an "id" of its own is kept, whatever its type
        {"id": 3, **raw[2]},
        {"id": 4, "one": 1},
    ]


async def test_injected_bills_are_filtered_by_a_parseable_starttime(client: Client) -> None:
    await client.admin(
        "POST",
        "inject",
        [
            {"starttime": "2024-05-01 10:00:00"},
            {"starttime": "2019-05-01 10:00:00"},
            {"starttime": "not a time"},
            {"starttime": 1714528800},
            {},
        ],
    )
    window = {"starttime": "2024-05-01 00:00:00", "endtime": "2024-05-02 00:00:00"}
    assert await client.bill_ids(**window) == [1, 3, 4, 5]
    far_away = {"starttime": "2030-01-01 00:00:00", "endtime": "2030-01-02 00:00:00"}
    assert await client.bill_ids(**far_away) == [3, 4, 5]


async def test_injected_bills_meet_filters_only_where_comparable(client: Client) -> None:
    await client.admin(
        "POST",
        "inject",
        [
            {"direction": "callin", "extnumber": "8001", "callmethod": 2},
            {"direction": "callout", "extnumber": "8002", "callmethod": 3},
            {"direction": ["callin"], "extnumber": None, "callmethod": "3"},
        ],
    )
    assert await client.bill_ids(direction=1) == [1, 3]
    assert await client.bill_ids(extnumber="8002") == [2, 3]
    assert await client.bill_ids(callmethod=2) == [1, 3]
    assert await client.bill_ids(syncflag=1, direction=2) == [2, 3]
    assert await client.bill_ids(syncflag=2) == [2, 3]


@pytest.mark.parametrize("payload", [[], [1], "bill", [{"a": 1}, 2], None])
async def test_inject_refuses_what_is_not_a_bill(client: Client, payload: Any) -> None:
    url = client.simulator.admin_url + "inject"
    data = orjson.dumps(payload)
    async with client.session.post(url, data=data) as response:
        assert response.status == 400


@pytest.mark.parametrize(
    "payload", [{}, {"count": 0}, {"count": "5"}, {"count": 1.0}, {"count": 10**6}]
)
async def test_generate_validates_count(client: Client, payload: Any) -> None:
    status, answer = await client.admin_status("POST", "generate", payload)
    assert status == 400
    assert "count" in answer["error"]


async def test_stats_count_records_requests_and_faults(start: StartSimulator) -> None:
    api = await start(backlog=30)
    await api.login()
    await api.bill_ids(syncflag=1, itemsperpage=12)
    await api.call({"service": LOGIN, "appid": "nobody", "accesskey": "x"})
    await api.call({"service": "no.such.service"})
    await api.admin("POST", "faults", {"ret_500_rate": 1.0})
    await api.call(api.bill_fields())

    stats = await api.admin("GET", "stats")

    assert stats["records"] == {
        "visible": 30,
        "unqueried": 18,
        "queried": 12,
        "taken_by_competitor": 0,
        "poisoned": 0,
    }
    assert stats["requests"] == {
        "App.Sip_Auth.Login": {"ret_200": 1, "ret_601": 1},
        "App.Sip_Cdr.GetBill": {"ret_200": 1, "ret_500": 1},
        "unknown": {"ret_400": 1},
    }
    assert stats["faults"] == {"ret_500": 1}
    assert stats["unexpected_errors"] == 0


async def test_records_lists_everything_visible_in_pages(start: StartSimulator) -> None:
    api = await start(backlog=2500)
    await api.login()
    await api.bill_ids(syncflag=1, itemsperpage=100)  # queried records are listed too

    first = await api.admin("GET", "records?limit=1000")
    second = await api.admin("GET", f"records?after_id={first['next_after_id']}&limit=1000")
    everything = await api.all_records()

    assert [bill["id"] for bill in first["records"]] == list(range(1, 1001))
    assert [bill["id"] for bill in second["records"]] == list(range(1001, 2001))
    assert first["visible"] == 2500
    assert [bill["id"] for bill in everything] == list(range(1, 2501))
    served = [
        bill for page in (1, 2, 3) for bill in (await api.get_bill(currentpage=page))["bills"]
    ]
    assert [as_served(bill) for bill in everything] == served
    assert all(bill["poison"] is None and "poison_id" not in bill for bill in everything)
    assert (await api.admin("GET", "records?after_id=2500"))["records"] == []


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=10001", "after_id=x", "after_id=-1", "limit=1.5"]
)
async def test_records_validates_its_query(client: Client, query: str) -> None:
    status, answer = await client.admin_status("GET", f"records?{query}")
    assert status == 400
    assert query.split("=", maxsplit=1)[0] in answer["error"]
