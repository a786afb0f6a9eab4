"""Fixtures for the simulator's tests: a simulator on a real socket and a small HTTP client
that speaks its API and admin endpoints.

Every simulator started here must end with `unexpected_errors == 0`: no request of any test,
however malformed, may reach the catch-all that turns a crash into `ret` 500.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import orjson
import pytest

from cdr_connector.simulator import (
    ManualClock,
    RunningSimulator,
    SimulatorConfig,
    running_simulator,
)

APPID = "test-app"
ACCESSKEY = "test-secret"
LOGIN = "App.Sip_Auth.Login"
GET_BILL = "App.Sip_Cdr.GetBill"
GET_RECORD_FILE = "App.Sip_Cdr.GetRecodeFile"
# A fixed "now" for simulators on a ManualClock: 2024-03-01 12:00:00 in Shanghai.
T0 = 1_709_265_600.0
EVERYTHING = {"starttime": "2000-01-01 00:00:00", "endtime": "2099-12-31 23:59:59"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes more than a few seconds (a 1M backlog)")


def make_config(**overrides: Any) -> SimulatorConfig:
    """A quiet simulator by default: no backlog, no live calls."""
    settings: dict[str, Any] = {
        "appid": APPID,
        "accesskey": ACCESSKEY,
        "seed": 7,
        "rate": 0.0,
        "backlog": 0,
    }
    settings.update(overrides)
    return SimulatorConfig(**settings)


class Client:
    """Speaks to one simulator: form posts to the API, JSON to /admin/."""

    def __init__(self, session: aiohttp.ClientSession, simulator: RunningSimulator) -> None:
        self.session = session
        self.simulator = simulator
        self.token = ""

    async def post_raw(self, fields: Mapping[str, str], **kwargs: Any) -> aiohttp.ClientResponse:
        async with self.session.post(self.simulator.url, data=dict(fields), **kwargs) as response:
            await response.read()
            return response

    async def call(self, fields: Mapping[str, str], **kwargs: Any) -> dict[str, Any]:
        """POST a form and parse the envelope (HTTP 200 required)."""
        async with self.session.post(self.simulator.url, data=dict(fields), **kwargs) as response:
            assert response.status == 200
            body = await response.read()
        answer: dict[str, Any] = orjson.loads(body)
        return answer

    async def login(self, appid: str = APPID, accesskey: str = ACCESSKEY) -> str:
        answer = await self.call({"service": LOGIN, "appid": appid, "accesskey": accesskey})
        assert answer["ret"] == 200, answer
        self.token = answer["data"]["result"]["token"]
        return self.token

    def bill_fields(self, **fields: Any) -> dict[str, str]:
        """GetBill over every record, syncflag 3, callmethod 0, 1000 a page, unless overridden."""
        base: dict[str, Any] = {
            "service": GET_BILL,
            "token": self.token,
            **EVERYTHING,
            "syncflag": 3,
            "direction": 3,
            "callmethod": 0,
            "currentpage": 1,
            "itemsperpage": 1000,
        }
        base.update(fields)
        return {name: str(value) for name, value in base.items()}

    async def get_bill(self, **fields: Any) -> dict[str, Any]:
        answer = await self.call(self.bill_fields(**fields))
        assert answer["ret"] == 200, answer
        result: dict[str, Any] = answer["data"]["result"]
        return result

    async def bill_ids(self, **fields: Any) -> list[int]:
        return [bill["id"] for bill in (await self.get_bill(**fields))["bills"]]

    async def admin(self, method: str, path: str, payload: Any = None) -> Any:
        """An admin call that must succeed; its JSON answer."""
        status, answer = await self.admin_status(method, path, payload)
        assert status == 200, answer
        return answer

    async def admin_status(self, method: str, path: str, payload: Any = None) -> tuple[int, Any]:
        url = self.simulator.admin_url + path
        data = None if payload is None else orjson.dumps(payload)
        async with self.session.request(method, url, data=data) as response:
            return response.status, orjson.loads(await response.read())

    async def all_records(self) -> list[dict[str, Any]]:
        """Every visible record, through /admin/records."""
        records: list[dict[str, Any]] = []
        after = 0
        while True:
            page = await self.admin("GET", f"records?after_id={after}&limit=5000")
            if not page["records"]:
                return records
            records.extend(page["records"])
            after = page["next_after_id"]


def as_served(record: dict[str, Any]) -> dict[str, Any]:
    """A record of /admin/records without the listing's own keys (`poison`, `poison_id`): the
    bill as GetBill serves it, for every kind of poison but the raw-bytes ones."""
    return {key: value for key, value in record.items() if key not in ("poison", "poison_id")}


StartSimulator = Callable[..., Awaitable[Client]]


@pytest.fixture
async def start() -> AsyncIterator[StartSimulator]:
    """`await start(clock=None, **config_overrides)`: a running simulator and a logged-out
    client for it; everything is stopped at the end of the test."""
    async with AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())
        simulators: list[RunningSimulator] = []

        async def launch(clock: ManualClock | None = None, **overrides: Any) -> Client:
            config = make_config(**overrides)
            simulator = await stack.enter_async_context(running_simulator(config, clock=clock))
            simulators.append(simulator)
            return Client(session, simulator)

        yield launch
        for simulator in simulators:
            assert simulator.fleet.unexpected_errors == 0


@pytest.fixture
async def client(start: StartSimulator) -> Client:
    """A logged-in client of a simulator without records."""
    api = await start()
    await api.login()
    return api


async def advance(clock: ManualClock, seconds: float, step: float = 1.0) -> None:
    """Move a ManualClock forward in steps, letting the simulator's tasks run at each."""
    remaining = seconds
    while remaining > 0:
        clock.advance(min(step, remaining))
        remaining -= step
        for _ in range(5):
            await asyncio.sleep(0)
