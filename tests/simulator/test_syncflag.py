"""syncflag: 1 is a consuming read (and its pages shift), 2 and 3 only look."""

from __future__ import annotations

from tests.simulator.conftest import StartSimulator


async def test_syncflag_1_returns_each_record_once(start: StartSimulator) -> None:
    api = await start(backlog=25)
    await api.login()

    first = await api.get_bill(syncflag=1, itemsperpage=10)
    second = await api.get_bill(syncflag=1, itemsperpage=10)
    third = await api.get_bill(syncflag=1, itemsperpage=10)
    fourth = await api.get_bill(syncflag=1, itemsperpage=10)

    # totalitems counts the unqueried records before this request marks its page.
    assert [page["totalitems"] for page in (first, second, third, fourth)] == [25, 15, 5, 0]
    ids = [[bill["id"] for bill in page["bills"]] for page in (first, second, third, fourth)]
    assert ids == [list(range(1, 11)), list(range(11, 21)), list(range(21, 26)), []]


async def test_syncflag_1_pages_shift_while_being_read(start: StartSimulator) -> None:
    api = await start(backlog=30)
    await api.login()

    page_1 = await api.bill_ids(syncflag=1, itemsperpage=10, currentpage=1)
    # What was page 3 is now page 2: page 1 was marked.
    page_2 = await api.bill_ids(syncflag=1, itemsperpage=10, currentpage=2)
    page_1_again = await api.bill_ids(syncflag=1, itemsperpage=10, currentpage=1)

    assert page_1 == list(range(1, 11))
    assert page_2 == list(range(21, 31))
    assert page_1_again == list(range(11, 21))
    assert await api.bill_ids(syncflag=1) == []


async def test_syncflag_2_lists_queried_and_3_lists_all_without_marking(
    start: StartSimulator,
) -> None:
    api = await start(backlog=40)
    await api.login()
    read = await api.bill_ids(syncflag=1, itemsperpage=15)

    for _ in range(2):
        queried = await api.get_bill(syncflag=2)
        everything = await api.get_bill(syncflag=3)
        assert [bill["id"] for bill in queried["bills"]] == read
        assert queried["totalitems"] == 15
        assert [bill["id"] for bill in everything["bills"]] == list(range(1, 41))
        assert everything["totalitems"] == 40

    stats = await api.admin("GET", "stats")
    assert (stats["records"]["queried"], stats["records"]["unqueried"]) == (15, 25)
    assert await api.bill_ids(syncflag=1) == list(range(16, 41))


async def test_syncflag_1_marks_only_records_inside_the_window(start: StartSimulator) -> None:
    api = await start(backlog=1500, backlog_span=7200.0)
    await api.login()
    records = await api.all_records()
    middle = sorted(bill["starttime"] for bill in records)[600]
    early = [bill["id"] for bill in records if bill["starttime"] <= middle]

    read = await api.bill_ids(syncflag=1, starttime="2000-01-01 00:00:00", endtime=middle)
    rest = await api.bill_ids(syncflag=1)

    assert read == early
    assert rest == [bill["id"] for bill in records if bill["id"] not in set(early)]


async def test_absent_syncflag_means_1(start: StartSimulator) -> None:
    api = await start(backlog=12)
    await api.login()
    fields = api.bill_fields(itemsperpage=5)
    del fields["syncflag"]

    first = await api.call(fields)
    second = await api.call(fields)

    assert [bill["id"] for bill in first["data"]["result"]["bills"]] == [1, 2, 3, 4, 5]
    assert [bill["id"] for bill in second["data"]["result"]["bills"]] == [6, 7, 8, 9, 10]
