"""VendorApiClient against the simulator: the real HTTP server that stands in for the vendor."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any, Literal

import aiohttp
import pytest

from cdr_connector.api import GET_BILL, LOGIN, BillPage, BillQuery, VendorApiClient
from cdr_connector.config import Filters, PollSettings, SourceSettings
from cdr_connector.errors import ApiAuthError
from cdr_connector.simulator import (
    ManualClock,
    RunningSimulator,
    SimulatorConfig,
    running_simulator,
)
from tests.fakes import FakeClock

BACKLOG = 25
PAGE_SIZE = 10
TOKEN_TTL = 60.0


@pytest.fixture
def sim_clock() -> ManualClock:
    return ManualClock(time.time())


@pytest.fixture
async def simulator(sim_clock: ManualClock) -> AsyncIterator[RunningSimulator]:
    config = SimulatorConfig(backlog=BACKLOG, rate=0, backlog_span=3600, token_ttl=TOKEN_TTL)
    async with running_simulator(config, clock=sim_clock) as sim:
        yield sim


@pytest.fixture
async def make_client(simulator: RunningSimulator) -> AsyncIterator[Callable[..., VendorApiClient]]:
    clients: list[VendorApiClient] = []
    config = simulator.state.config

    def make(**source: Any) -> VendorApiClient:
        fields = {
            "api_url": simulator.url,
            "appid": config.appid,
            "accesskey": config.accesskey,
            "timezone": config.timezone,
            "request_timeout_seconds": 5.0,
        }
        settings = SourceSettings(**(fields | source))
        poll = PollSettings(page_size=PAGE_SIZE, max_attempts=8)
        client = VendorApiClient(settings, poll, clock=FakeClock(), rng=random.Random(3))
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


def window_query(
    simulator: RunningSimulator, syncflag: Literal[1, 2, 3], page: int = 1
) -> BillQuery:
    """A dial-time window that holds the whole backlog."""
    now = datetime.fromtimestamp(simulator.state.clock.time(), simulator.state.config.zone)
    return BillQuery(
        start=now - timedelta(days=1),
        end=now + timedelta(hours=1),
        syncflag=syncflag,
        page=page,
        page_size=PAGE_SIZE,
        filters=Filters(),
    )


def ids_of(page: BillPage) -> list[int]:
    return [bill["id"] for bill in page.bills]


def served(simulator: RunningSimulator, service: str, outcome: str) -> int:
    return simulator.state.requests[service, outcome]


async def test_login_and_a_consuming_page(
    simulator: RunningSimulator, make_client: Callable[..., VendorApiClient]
) -> None:
    client = make_client()
    await client.login()
    first = await client.get_bills(window_query(simulator, 1))
    assert first.totalitems == BACKLOG
    assert len(first.bills) == PAGE_SIZE
    assert all(isinstance(bill, dict) for bill in first.bills)
    # syncflag=1 consumes: page 1 again brings the next records.
    second = await client.get_bills(window_query(simulator, 1))
    assert second.totalitems == BACKLOG - PAGE_SIZE
    assert not set(ids_of(first)) & set(ids_of(second))
    assert served(simulator, LOGIN, "ret_200") == 1


async def test_a_full_listing_with_syncflag_3_pages_through_every_record(
    simulator: RunningSimulator, make_client: Callable[..., VendorApiClient]
) -> None:
    client = make_client()
    pages = [await client.get_bills(window_query(simulator, 3, page)) for page in (1, 2, 3, 4)]
    assert [p.totalitems for p in pages] == [BACKLOG] * 4
    assert [len(p.bills) for p in pages] == [10, 10, 5, 0]
    ids = [i for p in pages for i in ids_of(p)]
    assert len(set(ids)) == BACKLOG
    assert simulator.state.store.unqueried == BACKLOG  # syncflag=3 marks nothing


async def test_an_expired_token_is_renewed_once_and_the_request_repeated(
    simulator: RunningSimulator,
    sim_clock: ManualClock,
    make_client: Callable[..., VendorApiClient],
) -> None:
    client = make_client()
    await client.get_bills(window_query(simulator, 3))
    sim_clock.advance(TOKEN_TTL + 1)
    page = await client.get_bills(window_query(simulator, 3))
    assert page.totalitems == BACKLOG
    assert served(simulator, GET_BILL, "ret_600") == 1
    assert served(simulator, LOGIN, "ret_200") == 2


async def test_a_wrong_accesskey_is_refused_with_what_to_check(
    simulator: RunningSimulator, make_client: Callable[..., VendorApiClient]
) -> None:
    client = make_client(accesskey="not-the-key")
    with pytest.raises(ApiAuthError, match=r"check source\.appid and source\.accesskey"):
        await client.get_bills(window_query(simulator, 3))
    assert served(simulator, LOGIN, "ret_601") == 1
    assert served(simulator, GET_BILL, "ret_200") == 0


async def test_a_listing_completes_on_a_flaky_server(
    simulator: RunningSimulator, make_client: Callable[..., VendorApiClient]
) -> None:
    simulator.state.faults.update(
        {"http_5xx_rate": 0.15, "ret_500_rate": 0.15, "drop_rate": 0.1, "bad_json_rate": 0.1}
    )
    client = make_client()
    pages = [await client.get_bills(window_query(simulator, 3, page)) for page in (1, 2, 3)]
    assert len({i for p in pages for i in ids_of(p)}) == BACKLOG
    assert sum(simulator.state.faults.injected.values()) > 0


async def test_a_recording_address_can_be_downloaded(
    simulator: RunningSimulator, make_client: Callable[..., VendorApiClient]
) -> None:
    client = make_client()
    listing = await client.get_bills(window_query(simulator, 3))
    filename = next(b["recordfilename"] for b in listing.bills if b["recordfilename"])
    address = await client.get_record_file_url(filename)
    assert address.startswith(simulator.url)
    async with aiohttp.ClientSession() as session, session.get(address) as response:
        assert response.status == 200
        assert response.content_type == "audio/wav"
