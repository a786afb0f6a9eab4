"""The API client's token against the scripted fake vendor of test_api_client.py: which login
answer gives a token, which 600 drops one, and the shortest renewal interval allowed."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from cdr_connector.api import GET_BILL, LOGIN, VendorApiClient
from cdr_connector.config import PollSettings
from cdr_connector.errors import ApiResponseError, ApiTransientError
from tests.fakes import FakeClock
from tests.unit.test_api_client import BILLS, FakeVendor, Reply, make_source, query, ret, serving


@pytest.fixture
async def vendor() -> AsyncIterator[FakeVendor]:
    async with serving(FakeVendor()) as fake:
        yield fake


@asynccontextmanager
async def client_of(
    vendor: FakeVendor, *, clock: FakeClock | None = None, max_attempts: int = 8, **source: Any
) -> AsyncIterator[VendorApiClient]:
    poll = PollSettings(max_attempts=max_attempts, retry_max_seconds=4.0)
    settings = make_source(vendor.url, **source)
    client = VendorApiClient(settings, poll, clock=clock or FakeClock(), rng=random.Random(5))
    try:
        yield client
    finally:
        await client.close()


def held(release: asyncio.Event, then: Reply) -> Reply:
    """Answers only once `release` is set."""

    async def reply(request: web.Request, form: dict[str, str]) -> web.StreamResponse:
        await release.wait()
        return await then(request, form)

    return reply


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.01)


async def test_a_late_600_for_a_replaced_token_keeps_the_new_token(vendor: FakeVendor) -> None:
    """A request still in flight with the old token learns of its expiry after another
    request has logged in again: it retries with the new token instead of dropping it and
    logging in a third time."""
    async with client_of(vendor) as client:
        await client.get_bills(query())
        vendor.expire_tokens()
        release = asyncio.Event()
        vendor.script(GET_BILL, held(release, vendor.healthy))
        late = asyncio.create_task(client.get_bills(query()))
        await until(lambda: vendor.count(GET_BILL) == 2)  # sent with the first token
        await client.get_bills(query())  # 600, a new login, the page
        release.set()  # the late request's 600 for the first token
        assert (await late).bills == BILLS
    assert vendor.count(LOGIN) == 2
    assert vendor.received[-1].form["token"] == vendor.issued[1]


@pytest.mark.parametrize(
    "result",
    [{"companycode": "1"}, {"token": ""}, {"token": 12345}, {"token": None}, "tok-1", None],
    ids=["no token", "empty", "a number", "null", "not an object", "no result"],
)
async def test_a_login_answer_without_a_token_string_is_refused(
    vendor: FakeVendor, result: Any
) -> None:
    vendor.script(LOGIN, ret(200, result=result))
    async with client_of(vendor, max_attempts=1) as client:
        with pytest.raises(ApiTransientError, match="failed after 1 attempt") as failed:
            await client.get_bills(query())
    assert isinstance(failed.value.__cause__, ApiResponseError)
    assert "no token string" in str(failed.value.__cause__)
    assert vendor.count(GET_BILL) == 0


async def test_a_token_may_be_renewed_one_second_after_its_login(vendor: FakeVendor) -> None:
    """A renewal margin one second short of the lifetime is allowed, and honoured."""
    clock = FakeClock()
    async with client_of(
        vendor, clock=clock, token_lifetime_seconds=60, token_renew_before_seconds=59
    ) as client:
        await client.get_bills(query())
        clock.advance(0.5)
        await client.get_bills(query())
        assert vendor.count(LOGIN) == 1
        clock.advance(0.5)
        await client.get_bills(query())
        assert vendor.count(LOGIN) == 2
