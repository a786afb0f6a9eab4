"""A backlog of a million records: preloaded in well under a minute, pages served fast."""

from __future__ import annotations

import time

import pytest

from tests.simulator.conftest import StartSimulator

MILLION = 1_000_000


@pytest.mark.slow
async def test_a_million_record_backlog(start: StartSimulator) -> None:
    began = time.monotonic()
    api = await start(backlog=MILLION)
    assert time.monotonic() - began < 60

    stats = await api.admin("GET", "stats")
    assert stats["records"]["visible"] == stats["records"]["unqueried"] == MILLION
    await api.login()

    pages = []
    began = time.monotonic()
    for _ in range(5):
        pages.append(await api.get_bill(syncflag=1, itemsperpage=1000))
    per_page = (time.monotonic() - began) / 5

    assert [page["totalitems"] for page in pages] == [MILLION - 1000 * n for n in range(5)]
    assert [bill["id"] for bill in pages[4]["bills"]] == list(range(4001, 5001))
    # Serving a page does not scan the million records (that alone takes over 0.1 s).
    assert per_page < 0.1
    last = await api.get_bill(syncflag=3, itemsperpage=1000, currentpage=1000)
    assert [bill["id"] for bill in last["bills"]] == list(range(999_001, MILLION + 1))
