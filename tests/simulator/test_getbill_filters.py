"""GetBill's window and filters, checked against every visible record (from /admin/records)
filtered here independently."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from cdr_connector.simulator import ManualClock
from tests.simulator.conftest import T0, Client, StartSimulator, as_served

Bill = dict[str, Any]


@pytest.fixture
async def loaded(start: StartSimulator) -> tuple[Client, list[Bill]]:
    """A simulator with 4000 records and the full list of them."""
    api = await start(clock=ManualClock(T0), backlog=4000, backlog_span=6 * 3600.0)
    await api.login()
    return api, await api.all_records()


async def listing(api: Client, **fields: Any) -> tuple[int, list[int]]:
    """totalitems and every id of a syncflag=3 listing, read page by page."""
    ids: list[int] = []
    page = 1
    while True:
        result = await api.get_bill(currentpage=page, **fields)
        if not result["bills"]:
            return result["totalitems"], ids
        ids.extend(bill["id"] for bill in result["bills"])
        page += 1


def most_common(records: list[Bill], field: str) -> str:
    counts = Counter[str](bill[field] for bill in records if bill[field] not in ("", "0"))
    return counts.most_common(1)[0][0]


async def check(
    api: Client, records: list[Bill], keep: Callable[[Bill], bool], **fields: Any
) -> None:
    expected = [bill["id"] for bill in records if keep(bill)]
    assert expected, "the filter must select something to be a meaningful test"
    assert len(expected) < len(records), "the filter must leave something out"
    total, ids = await listing(api, **fields)
    assert ids == expected
    assert total == len(expected)


@pytest.mark.parametrize(("direction", "name"), [(1, "callin"), (2, "callout")])
async def test_direction(loaded: tuple[Client, list[Bill]], direction: int, name: str) -> None:
    api, records = loaded
    await check(api, records, lambda bill: bill["direction"] == name, direction=direction)


@pytest.mark.parametrize("method", [1, 2, 3, 4, 5, 6])
async def test_callmethod(loaded: tuple[Client, list[Bill]], method: int) -> None:
    api, records = loaded
    await check(api, records, lambda bill: bill["callmethod"] == method, callmethod=method)


async def test_absent_callmethod_means_api_calls_only(loaded: tuple[Client, list[Bill]]) -> None:
    api, records = loaded
    fields = api.bill_fields()
    del fields["callmethod"]
    answer = await api.call(fields)
    expected = [bill["id"] for bill in records if bill["callmethod"] == 3]
    assert answer["data"]["result"]["totalitems"] == len(expected)
    assert [bill["id"] for bill in answer["data"]["result"]["bills"]] == expected[:1000]


async def test_extnumber_list(loaded: tuple[Client, list[Bill]]) -> None:
    api, records = loaded
    wanted = {"8001", "8017", "8050"}
    await check(api, records, lambda bill: bill["extnumber"] in wanted, extnumber="8001, 8017,8050")


async def test_empty_extnumber_means_all(loaded: tuple[Client, list[Bill]]) -> None:
    api, records = loaded
    total, ids = await listing(api, extnumber="")
    assert ids == [bill["id"] for bill in records]
    assert total == len(records)


@pytest.mark.parametrize("field", ["destnumber", "userid", "memberid", "chengshudu", "customuuid"])
async def test_exact_match_filters(loaded: tuple[Client, list[Bill]], field: str) -> None:
    api, records = loaded
    value = most_common(records, field)
    await check(api, records, lambda bill: bill[field] == value, **{field: value})


async def test_non_ascii_filter(loaded: tuple[Client, list[Bill]]) -> None:
    api, records = loaded
    value = next(bill["userid"] for bill in records if not bill["userid"].isascii())
    await check(api, records, lambda bill: bill["userid"] == value, userid=value)


async def test_unknown_filter_value_selects_nothing(loaded: tuple[Client, list[Bill]]) -> None:
    api, _ = loaded
    assert await listing(api, destnumber="00000000000") == (0, [])
    assert await listing(api, extnumber="9999") == (0, [])


async def test_filters_combine(loaded: tuple[Client, list[Bill]]) -> None:
    api, records = loaded
    await check(
        api,
        records,
        lambda bill: bill["direction"] == "callout" and bill["extnumber"] in {"8002", "8003"},
        direction=2,
        extnumber="8002,8003",
    )


async def test_window_on_start_time_is_inclusive(loaded: tuple[Client, list[Bill]]) -> None:
    api, records = loaded
    starts = sorted(bill["starttime"] for bill in records)
    low, high = starts[len(starts) // 4], starts[len(starts) // 2]
    await check(
        api, records, lambda bill: low <= bill["starttime"] <= high, starttime=low, endtime=high
    )


async def test_pages_are_ordered_by_id_and_total_counts_everything(
    loaded: tuple[Client, list[Bill]],
) -> None:
    api, records = loaded
    pages = [await api.get_bill(currentpage=page, itemsperpage=700) for page in (1, 2, 6, 7)]
    assert [page["totalitems"] for page in pages] == [4000] * 4
    assert [bill["id"] for bill in pages[0]["bills"]] == list(range(1, 701))
    assert [bill["id"] for bill in pages[1]["bills"]] == list(range(701, 1401))
    assert [bill["id"] for bill in pages[2]["bills"]] == list(range(3501, 4001))
    assert pages[3]["bills"] == []
    assert pages[2]["bills"] == [as_served(bill) for bill in records[3500:]]


async def test_page_size_limits(loaded: tuple[Client, list[Bill]]) -> None:
    api, _ = loaded
    assert len((await api.get_bill(itemsperpage=1))["bills"]) == 1
    assert len((await api.get_bill(itemsperpage=1000))["bills"]) == 1000
    assert (await api.get_bill(currentpage=10**12))["bills"] == []
