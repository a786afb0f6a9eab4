"""The store's block index against a plain scan: random queries over records whose queried
marks, start times and injected bills cut across block boundaries."""

from __future__ import annotations

import random
import zoneinfo
from typing import Any

from cdr_connector.simulator import generator
from cdr_connector.simulator.localtime import LocalTime
from cdr_connector.simulator.render import FIRST_ID
from cdr_connector.simulator.store import BillQuery, RecordStore, Selection
from tests.simulator.conftest import T0

Bill = dict[str, Any]
TEXT_FILTERS = ("destnumber", "userid", "memberid", "chengshudu", "customuuid")


def build_store(rng: random.Random) -> tuple[RecordStore, LocalTime, dict[int, Bill]]:
    """A store of generated records and a few injected bills; the third value is each injected
    bill by position, as `inject` promises to serve it."""
    pools = generator.Pools.build(3)
    local_time = LocalTime(zoneinfo.ZoneInfo("Asia/Shanghai"))
    store = RecordStore(pools, local_time, "127.0.0.1")
    injected: dict[int, Bill] = {}
    rows = list(generator.backlog(pools, 3, 8000, end=T0, span=4 * 3600, poison_rate=0.0))
    # Injected bills in two of the eight blocks; the others can be counted without a scan.
    for index in range(0, len(rows), 500):
        store.extend(rows[index : index + 500])
        if index not in (1500, 4000, 4500):
            continue
        template = store.render([rng.randrange(len(store))])[0]
        raw = {key: value for key, value in template.items() if key != "id"}
        if rng.random() < 0.5:
            raw["starttime"] = "garbage"
        bill_id = store.inject(raw)
        injected[bill_id - FIRST_ID] = {"id": bill_id, **raw}
    return store, local_time, injected


def plain_select(
    bills: list[Bill], starts: list[int | None], queried: set[int], query: BillQuery
) -> list[int]:
    """The rules of getbill.md, one bill at a time."""
    wanted = []
    for position, (bill, start) in enumerate(zip(bills, starts, strict=True)):
        if query.syncflag == 1 and position in queried:
            continue
        if query.syncflag == 2 and position not in queried:
            continue
        if start is not None and not query.start <= start <= query.end:
            continue
        if query.direction != 3 and bill["direction"] != ("callin", "callout")[query.direction - 1]:
            continue
        if query.callmethod and bill["callmethod"] != query.callmethod:
            continue
        if query.extnumbers and bill["extnumber"] not in query.extnumbers:
            continue
        if any(
            getattr(query, name) and bill[name] != getattr(query, name) for name in TEXT_FILTERS
        ):
            continue
        wanted.append(position)
    return wanted


def random_query(rng: random.Random, bills: list[Bill], starts: list[int]) -> BillQuery:
    low, high = sorted(rng.choice(starts) + rng.randint(-60, 60) for _ in range(2))
    if rng.random() < 0.3:
        low, high = 0, 2**40
    sample = rng.choice(bills)
    filters: dict[str, Any] = {}
    if rng.random() < 0.3:
        field = rng.choice(TEXT_FILTERS)
        filters[field] = sample[field] if rng.random() < 0.8 else "nobody"
    if rng.random() < 0.3:
        filters["extnumbers"] = frozenset(rng.sample(["8001", "8002", "8003", "9999", ""], 2))
    return BillQuery(
        start=low,
        end=high,
        syncflag=rng.choice((1, 2, 3)),
        direction=rng.choice((1, 2, 3, 3)),
        callmethod=rng.choice((0, 0, 0, 1, 3, 6)),
        page=rng.choice((1, 1, 2, 3, 7)),
        per_page=rng.choice((1, 10, 50, 333, 1000)),
        **filters,
    )


def test_block_index_selects_what_a_plain_scan_selects() -> None:
    rng = random.Random(42)
    store, clock, _ = build_store(rng)
    bills = store.render(range(len(store)))
    starts = [clock.parse(bill["starttime"]) for bill in bills]
    known_starts = [start for start in starts if start is not None]
    queried: set[int] = set()
    for round_ in range(500):
        query = random_query(rng, bills, known_starts)
        expected = plain_select(bills, starts, queried, query)
        selection = store.select(query)
        skip = (query.page - 1) * query.per_page
        assert selection.total == len(expected), (round_, query)
        assert selection.positions == expected[skip : skip + query.per_page], (round_, query)
        if query.syncflag == 1:
            assert store.mark(selection.positions) == len(selection.positions)
            queried.update(selection.positions)
        if round_ % 50 == 0:
            queried.update(store.take_unqueried(rng.randint(1, 500)))
        assert store.queried == len(queried)


def test_windows_ending_exactly_at_a_block_edge() -> None:
    """Both ends of the window are inclusive, also where they meet a block's earliest or
    latest start time."""
    store, clock, _ = build_store(random.Random(7))
    bills = store.render(range(len(store)))
    starts = [clock.parse(bill["starttime"]) for bill in bills]
    for block in range(0, len(bills), 1024):
        edges = [start for start in starts[block : block + 1024] if start is not None]
        for low, high in [
            (min(edges), min(edges)),
            (max(edges), max(edges)),
            (0, min(edges)),
            (max(edges), 2**40),
        ]:
            query = BillQuery(start=low, end=high, per_page=1000)
            expected = plain_select(bills, starts, set(), query)
            assert store.select(query) == Selection(len(expected), expected[:1000])


def test_a_page_with_gaps_renders_the_same_bills_as_the_whole_store() -> None:
    """A page is usually consecutive records, copied out of the columns one slice each; one
    with gaps, as concurrent readers or a competitor leave it, is gathered record by record
    and must render the same bills, injected ones included."""
    rng = random.Random(11)
    store, _, injected = build_store(rng)
    everything = store.render(range(len(store)))
    scattered = sorted({*rng.sample(range(len(store)), 300), *injected})
    assert scattered[-1] - scattered[0] != len(scattered) - 1  # not one slice
    assert store.render(scattered) == [everything[position] for position in scattered]
    assert [store.render([p])[0] for p in injected] == list(injected.values())
