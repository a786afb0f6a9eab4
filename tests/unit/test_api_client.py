"""VendorApiClient against a scripted fake of the vendor on 127.0.0.1, with a fake clock.

The fake answers like a healthy server unless a test queues answers for a service; queued
answers are served first, in order. Backoff pauses and token expiry run on the fake clock, so
no test sleeps for them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import random
import ssl
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import orjson
import pytest
from aiohttp import web

from cdr_connector.api import (
    GET_BILL,
    GET_RECORD_FILE,
    LOGIN,
    BillPage,
    BillQuery,
    VendorApiClient,
    tls_option,
)
from cdr_connector.backoff import Backoff
from cdr_connector.config import Filters, PollSettings, SourceSettings
from cdr_connector.errors import (
    ApiAuthError,
    ApiRequestError,
    ApiResponseError,
    ApiTransientError,
    ConfigError,
    PermanentError,
)
from cdr_connector.metrics import REGISTRY
from tests.fakes import FakeClock, FakeRecorder

ACCESSKEY = "ak-SECRET-5f1c9e07"
APPID = "test-appid"
PBX = ZoneInfo("Asia/Shanghai")
BILLS = [{"id": 1, "extnumber": "8001"}, {"id": 2, "extnumber": ""}]

Reply = Callable[[web.Request, dict[str, str]], Awaitable[web.StreamResponse]]


# --- the fake vendor ---------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    service: str
    form: dict[str, str]
    content_type: str


class FakeVendor:
    """The vendor API, scripted per test."""

    def __init__(self) -> None:
        self.url = ""
        self.received: list[Received] = []
        self.queued: dict[str, deque[Reply]] = defaultdict(deque)
        self.valid_tokens: set[str] = set()
        self.issued: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0
        # Stalled answers wait for this (or their own timeout); set at teardown.
        self.release = asyncio.Event()

    def script(self, service: str, *replies: Reply) -> None:
        self.queued[service].extend(replies)

    def count(self, service: str) -> int:
        return sum(1 for r in self.received if r.service == service)

    def expire_tokens(self) -> None:
        self.valid_tokens.clear()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        form = {name: str(value) for name, value in (await request.post()).items()}
        service = form.get("service", "")
        self.received.append(Received(service, form, request.content_type))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            queue = self.queued.get(service)
            if queue:
                return await queue.popleft()(request, form)
            return await self.healthy(request, form)
        finally:
            self.in_flight -= 1

    async def healthy(self, request: web.Request, form: dict[str, str]) -> web.StreamResponse:
        service = form.get("service")
        if service == LOGIN:
            if (form.get("appid"), form.get("accesskey")) != (APPID, ACCESSKEY):
                return envelope_response(601, msg="appid not authorised")
            token = f"tok-SECRET-{len(self.issued) + 1:04d}"
            self.issued.append(token)
            self.valid_tokens.add(token)
            return envelope_response(200, result={"token": token, "companycode": "1"})
        if form.get("token") not in self.valid_tokens:
            return envelope_response(600, msg="token invalid")
        if service == GET_BILL:
            result = {"totalitems": 2, "currentpage": 1, "itemsperpage": 10, "bills": BILLS}
            return envelope_response(200, result=result)
        if service == GET_RECORD_FILE:
            return envelope_response(200, result={"url": f"http://files/{form['filename']}"})
        return envelope_response(400, msg=f"unknown service {service}")


def envelope_response(
    ret: int, *, result: Any = None, status: int | None = None, msg: str = "", desc: str = ""
) -> web.Response:
    data = {
        "status": (0 if ret == 200 else 1) if status is None else status,
        "desc": desc,
        "result": result,
        "reqtime": 1700000000,
        "rsptime": 1700000000,
    }
    body = orjson.dumps({"ret": ret, "data": data, "msg": msg})
    return web.Response(body=body, content_type="application/json")


def ret(code: int, *, msg: str = "", result: Any = None, status: int | None = None) -> Reply:
    async def reply(request: web.Request, form: dict[str, str]) -> web.StreamResponse:
        return envelope_response(code, msg=msg, result=result, status=status, desc=msg)

    return reply


def page(result: Any) -> Reply:
    return ret(200, result=result)


def raw(body: bytes, *, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    async def reply(request: web.Request, form: dict[str, str]) -> web.StreamResponse:
        return web.Response(body=body, status=status, headers=headers, content_type="text/html")

    return reply


def json_body(document: Any) -> Reply:
    async def reply(request: web.Request, form: dict[str, str]) -> web.StreamResponse:
        return web.Response(body=orjson.dumps(document), content_type="application/json")

    return reply


def dropped() -> Reply:
    async def reply(request: web.Request, form: dict[str, str]) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()
        return web.Response()

    return reply


def stalled(vendor: FakeVendor, seconds: float = 5.0) -> Reply:
    async def reply(request: web.Request, form: dict[str, str]) -> web.StreamResponse:
        with suppress(TimeoutError):
            await asyncio.wait_for(vendor.release.wait(), seconds)
        return await vendor.healthy(request, form)

    return reply


def gated(vendor: FakeVendor, gate: asyncio.Barrier, then: Reply) -> Reply:
    """Waits until `gate` is full, so every request of a burst is in flight at once."""

    async def reply(request: web.Request, form: dict[str, str]) -> web.StreamResponse:
        await gate.wait()
        return await then(request, form)

    return reply


@asynccontextmanager
async def serving(
    vendor: FakeVendor, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[FakeVendor]:
    app = web.Application()
    app.router.add_post("/{tail:.*}", vendor.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    scheme = "https" if ssl_context else "http"
    vendor.url = f"{scheme}://127.0.0.1:{runner.addresses[0][1]}/api/"
    try:
        yield vendor
    finally:
        vendor.release.set()
        await runner.cleanup()


@pytest.fixture
async def vendor() -> AsyncIterator[FakeVendor]:
    async with serving(FakeVendor()) as fake:
        yield fake


# --- clients -----------------------------------------------------------------------------

_source_names = itertools.count()


def make_source(url: str, **overrides: Any) -> SourceSettings:
    """A source with a name of its own, so every test reads fresh metric series."""
    fields: dict[str, Any] = {
        "name": f"t{next(_source_names)}",
        "api_url": url,
        "appid": APPID,
        "accesskey": ACCESSKEY,
        "request_timeout_seconds": 2.0,
    }
    return SourceSettings(**(fields | overrides))


Factory = Callable[..., VendorApiClient]


@pytest.fixture
async def make_client(vendor: FakeVendor) -> AsyncIterator[Factory]:
    clients: list[VendorApiClient] = []

    def make(
        *, clock: FakeClock | None = None, poll: dict[str, Any] | None = None, **source: Any
    ) -> VendorApiClient:
        settings = make_source(source.pop("api_url", vendor.url), **source)
        poll_settings = PollSettings(**({"retry_max_seconds": 4.0} | (poll or {})))
        client = VendorApiClient(
            settings, poll_settings, clock=clock or FakeClock(), rng=random.Random(5)
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


def query(*, syncflag: int = 1, page: int = 1) -> BillQuery:
    return BillQuery(
        start=datetime(2024, 3, 1, 0, 0, 0, tzinfo=PBX),
        end=datetime(2024, 3, 1, 23, 59, 59, tzinfo=PBX),
        syncflag=syncflag,  # type: ignore[arg-type]
        page=page,
        page_size=10,
        filters=Filters(),
    )


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def requests_total(source: str, service: str, outcome: str) -> float:
    return sample(
        "cdr_connector_api_requests_total", source=source, service=service, outcome=outcome
    )


def errors_total(source: str, kind: str) -> float:
    return sample("cdr_connector_api_errors_total", source=source, kind=kind)


def name_of(client: VendorApiClient) -> str:
    return client.source_name


def chain(exc: BaseException) -> Iterator[BaseException]:
    current: BaseException | None = exc
    while current is not None:
        yield current
        current = current.__cause__ or current.__context__


# --- the request -------------------------------------------------------------------------


async def test_a_page_is_fetched_with_one_login_and_the_documented_form(
    vendor: FakeVendor, make_client: Factory
) -> None:
    client = make_client()
    result = await client.get_bills(query())
    assert result == BillPage(2, 1, 10, BILLS, raw_size=result.raw_size)
    assert result.raw_size > 0
    login, getbill = vendor.received
    assert login.form == {"service": LOGIN, "appid": APPID, "accesskey": ACCESSKEY}
    assert getbill.content_type == "application/x-www-form-urlencoded"
    assert getbill.form == {
        "service": GET_BILL,
        "token": vendor.issued[0],
        "starttime": "2024-03-01 00:00:00",
        "endtime": "2024-03-01 23:59:59",
        "syncflag": "1",
        "currentpage": "1",
        "itemsperpage": "10",
        "direction": "3",
        "callmethod": "0",
        "extnumber": "",
        "destnumber": "",
        "userid": "",
        "memberid": "",
        "chengshudu": "",
        "customuuid": "",
    }


async def test_requests_are_reported_to_the_recorder_the_client_was_given(
    vendor: FakeVendor,
) -> None:
    recorder = FakeRecorder()
    before = requests_total("injected", "getbill", "ok")
    client = VendorApiClient(
        make_source(vendor.url, name="injected"), PollSettings(), clock=FakeClock(),
        recorder=recorder,
    )  # fmt: skip
    try:
        await client.get_bills(query())
    finally:
        await client.close()
    assert recorder.of("api_request") == [("login", "ok"), ("getbill", "ok")]
    assert recorder.of("token_renewed") == [None]
    assert requests_total("injected", "getbill", "ok") == before, "nothing in the registry"


async def test_bills_that_are_not_objects_are_passed_on(
    vendor: FakeVendor, make_client: Factory
) -> None:
    odd = [{"id": 1}, "not a bill", None, 7]
    vendor.script(GET_BILL, page({"totalitems": "4", "bills": odd}))
    result = await make_client().get_bills(query(page=3))
    assert result.bills == odd
    assert (result.totalitems, result.currentpage, result.itemsperpage) == (4, 3, 10)


async def test_the_token_is_cached_between_requests(
    vendor: FakeVendor, make_client: Factory
) -> None:
    client = make_client()
    for _ in range(3):
        await client.get_bills(query())
    assert vendor.count(LOGIN) == 1
    assert {r.form["token"] for r in vendor.received if r.service == GET_BILL} == {vendor.issued[0]}
    assert sample("cdr_connector_token_renewals_total", source=name_of(client)) == 1


async def test_the_token_is_renewed_before_it_expires(
    vendor: FakeVendor, make_client: Factory
) -> None:
    clock = FakeClock()
    client = make_client(clock=clock, token_lifetime_seconds=100, token_renew_before_seconds=10)
    await client.get_bills(query())
    clock.advance(89)
    await client.get_bills(query())
    assert vendor.count(LOGIN) == 1
    clock.advance(1)
    await client.get_bills(query())
    assert vendor.count(LOGIN) == 2
    assert vendor.received[-1].form["token"] == vendor.issued[1]


async def test_a_token_the_server_expired_is_renewed_and_the_request_repeated_at_once(
    vendor: FakeVendor, make_client: Factory
) -> None:
    clock = FakeClock()
    client = make_client(clock=clock)
    await client.get_bills(query())
    vendor.expire_tokens()
    assert (await client.get_bills(query())).bills == BILLS
    assert vendor.count(LOGIN) == 2
    assert clock.sleeps == []
    assert errors_total(name_of(client), "ret_600") == 1


async def test_one_login_renews_the_token_for_a_burst_of_requests_that_all_got_600(
    vendor: FakeVendor, make_client: Factory
) -> None:
    burst = 10
    client = make_client(poll={"concurrency": burst})
    await client.get_bills(query())
    vendor.expire_tokens()
    gate = asyncio.Barrier(burst)
    vendor.script(GET_BILL, *[gated(vendor, gate, vendor.healthy) for _ in range(burst)])

    pages = await asyncio.gather(*(client.get_bills(query()) for _ in range(burst)))

    assert all(p.bills == BILLS for p in pages)
    assert vendor.count(LOGIN) == 2
    assert sample("cdr_connector_token_renewals_total", source=name_of(client)) == 2
    assert errors_total(name_of(client), "ret_600") == burst


async def test_concurrent_first_requests_share_one_login(
    vendor: FakeVendor, make_client: Factory
) -> None:
    client = make_client()
    await asyncio.gather(*(client.get_bills(query()) for _ in range(5)))
    assert vendor.count(LOGIN) == 1


async def test_login_forces_a_new_token(vendor: FakeVendor, make_client: Factory) -> None:
    client = make_client()
    await client.login()
    await client.login()
    await client.get_bills(query())
    assert vendor.count(LOGIN) == 2
    assert vendor.received[-1].form["token"] == vendor.issued[1]


async def test_a_closed_client_logs_in_again_on_its_next_request(
    vendor: FakeVendor, make_client: Factory
) -> None:
    client = make_client()
    await client.get_bills(query())
    await client.close()
    await client.get_bills(query())
    assert vendor.count(LOGIN) == 2
    assert vendor.received[-1].form["token"] == vendor.issued[1]


async def test_connections_are_bounded_by_the_concurrency(
    vendor: FakeVendor, make_client: Factory
) -> None:
    client = make_client(poll={"concurrency": 2})
    await client.get_bills(query())
    gate_release = asyncio.Event()

    async def slow(request: web.Request, form: dict[str, str]) -> web.StreamResponse:
        await gate_release.wait()
        return await vendor.healthy(request, form)

    vendor.script(GET_BILL, *[slow for _ in range(10)])
    vendor.most_in_flight = 0
    requests = asyncio.gather(*(client.get_bills(query()) for _ in range(10)))
    await asyncio.sleep(0.2)
    gate_release.set()
    await requests
    # poll.concurrency plus two spare connections (for a login or a recording lookup).
    assert vendor.most_in_flight == 4


async def test_one_session_is_created_on_first_use_and_closed_once(vendor: FakeVendor) -> None:
    sessions: list[aiohttp.ClientSession] = []

    def factory() -> aiohttp.ClientSession:
        sessions.append(aiohttp.ClientSession())
        return sessions[-1]

    client = VendorApiClient(
        make_source(vendor.url), PollSettings(), clock=FakeClock(), session_factory=factory
    )
    assert sessions == []
    await client.get_bills(query())
    await client.get_bills(query())
    assert len(sessions) == 1
    await client.close()
    await client.close()
    assert sessions[0].closed


# --- retries -----------------------------------------------------------------------------

TRANSIENT = [
    pytest.param(lambda v: raw(b"<html>Bad Gateway</html>", status=502), "http_5xx", id="http-502"),
    pytest.param(lambda v: ret(500, msg="server error"), "ret_500", id="ret-500"),
    pytest.param(lambda v: ret(777, msg="maintenance"), "ret_other", id="unknown-ret"),
    pytest.param(lambda v: raw(b"<b>Fatal error</b> in Cdr.php"), "bad_json", id="not-json"),
    pytest.param(lambda v: raw(b'{"ret": 200, "data": {"status"'), "bad_json", id="truncated"),
    pytest.param(lambda v: json_body({"error": "gateway"}), "bad_envelope", id="no-ret"),
    pytest.param(lambda v: json_body([1, 2]), "bad_envelope", id="not-an-object"),
    pytest.param(lambda v: json_body({"ret": 200, "data": []}), "bad_envelope", id="data-list"),
    pytest.param(lambda v: page({"totalitems": "many", "bills": []}), "bad_envelope", id="total"),
    pytest.param(lambda v: page({"totalitems": 5, "bills": None}), "bad_envelope", id="no-bills"),
    pytest.param(lambda v: page([]), "bad_envelope", id="result-list"),
    pytest.param(lambda v: dropped(), "transport", id="dropped-connection"),
    pytest.param(stalled, "timeout", id="timeout"),
    pytest.param(lambda v: raw(b"slow down", status=429), "http_4xx", id="http-429"),
]


@pytest.mark.parametrize(("failure", "kind"), TRANSIENT)
async def test_a_transient_failure_is_retried_after_a_pause(
    vendor: FakeVendor,
    make_client: Factory,
    failure: Callable[[FakeVendor], Reply],
    kind: str,
) -> None:
    clock = FakeClock()
    client = make_client(clock=clock, request_timeout_seconds=0.3)
    vendor.script(GET_BILL, failure(vendor))

    assert (await client.get_bills(query())).bills == BILLS

    assert vendor.count(GET_BILL) == 2
    assert len(clock.sleeps) == 1
    assert 0 <= clock.sleeps[0] <= 0.5  # retry_initial_seconds
    source = name_of(client)
    assert errors_total(source, kind) == 1
    assert requests_total(source, "getbill", "retryable") == 1
    assert requests_total(source, "getbill", "ok") == 1


async def test_a_null_bill_list_is_an_empty_page_when_there_are_no_records(
    vendor: FakeVendor, make_client: Factory
) -> None:
    vendor.script(GET_BILL, page({"totalitems": 0, "bills": None}))
    result = await make_client().get_bills(query())
    assert (result.totalitems, result.bills) == (0, [])


async def test_giving_up_after_max_attempts_names_the_service_attempts_and_last_error(
    vendor: FakeVendor, make_client: Factory
) -> None:
    clock = FakeClock()
    client = make_client(clock=clock, poll={"max_attempts": 4})
    vendor.script(GET_BILL, *[raw(b"upstream down", status=503) for _ in range(4)])

    with pytest.raises(ApiTransientError) as caught:
        await client.get_bills(query())

    message = str(caught.value)
    assert GET_BILL in message
    assert "4 attempt" in message
    assert "HTTP 503" in message
    assert "upstream down" in message
    assert isinstance(caught.value.__cause__, ApiTransientError)
    assert vendor.count(GET_BILL) == 4
    expected = Backoff(0.5, 4.0, random.Random(5))
    assert clock.sleeps == [expected.delay(n) for n in (1, 2, 3)]
    assert errors_total(name_of(client), "http_5xx") == 4


async def test_retry_after_of_the_server_is_honoured(
    vendor: FakeVendor, make_client: Factory
) -> None:
    clock = FakeClock()
    client = make_client(clock=clock)
    vendor.script(GET_BILL, raw(b"busy", status=503, headers={"Retry-After": "3"}))
    await client.get_bills(query())
    assert clock.sleeps == [3.0]


async def test_a_transient_login_failure_counts_as_an_attempt_of_the_request(
    vendor: FakeVendor, make_client: Factory
) -> None:
    clock = FakeClock()
    client = make_client(clock=clock)
    vendor.script(LOGIN, ret(500, msg="db down"))
    assert (await client.get_bills(query())).bills == BILLS
    assert vendor.count(LOGIN) == 2
    assert len(clock.sleeps) == 1
    assert requests_total(name_of(client), "login", "retryable") == 1


async def test_a_server_that_rejects_every_token_is_not_hammered(
    vendor: FakeVendor, make_client: Factory
) -> None:
    clock = FakeClock()
    client = make_client(clock=clock, poll={"max_attempts": 4})
    vendor.script(GET_BILL, *[ret(600, msg="token invalid") for _ in range(4)])
    with pytest.raises(ApiTransientError, match=r"4 attempt.*ret 600"):
        await client.get_bills(query())
    # A first 600 renews at once; a second in a row waits like any server fault.
    assert len(clock.sleeps) == 2
    assert vendor.count(LOGIN) == 4  # a fresh token for every attempt


# --- permanent failures --------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    error: type[PermanentError]
    text: str  # in the message: what happened and what to fix
    kind: str  # the API_ERRORS kind


PERMANENT = [
    pytest.param(
        ret(400, msg="itemsperpage must be 1..1000"),
        Refusal(
            ApiRequestError, "illegal request (ret 400): itemsperpage must be 1..1000", "ret_400"
        ),
        id="400",
    ),
    pytest.param(
        ret(601, msg="appid not authorised"),
        Refusal(ApiAuthError, "check source.appid and source.accesskey", "ret_601"),
        id="601",
    ),
    pytest.param(ret(602), Refusal(ApiAuthError, "renew the vendor account", "ret_602"), id="602"),
    pytest.param(
        ret(603), Refusal(ApiAuthError, "enable call records (Sip_Cdr)", "ret_603"), id="603"
    ),
    pytest.param(
        ret(604), Refusal(ApiAuthError, "allow the connector's egress IP", "ret_604"), id="604"
    ),
    pytest.param(
        ret(200, status=1, msg="query failed"),
        Refusal(ApiRequestError, "data.status is 1 (query failed)", "ret_400"),
        id="status-1",
    ),
    pytest.param(
        raw(b"Not Found", status=404),
        Refusal(ApiRequestError, "HTTP 404 (check source.api_url): Not Found", "http_4xx"),
        id="http-404",
    ),
    pytest.param(
        raw(b"Forbidden", status=403),
        Refusal(ApiAuthError, "HTTP 403 (refused before reaching the API", "http_4xx"),
        id="http-403",
    ),
]


@pytest.mark.parametrize(("reply", "refusal"), PERMANENT)
async def test_a_permanent_failure_is_raised_at_once_with_what_to_fix(
    vendor: FakeVendor, make_client: Factory, reply: Reply, refusal: Refusal
) -> None:
    clock = FakeClock()
    client = make_client(clock=clock)
    vendor.script(GET_BILL, reply)
    with pytest.raises(refusal.error) as caught:
        await client.get_bills(query())
    assert refusal.text in str(caught.value)
    assert GET_BILL in str(caught.value)
    assert vendor.count(GET_BILL) == 1
    assert clock.sleeps == []
    assert errors_total(name_of(client), refusal.kind) == 1
    assert requests_total(name_of(client), "getbill", "permanent") == 1


async def test_a_wrong_accesskey_stops_at_the_login(
    vendor: FakeVendor, make_client: Factory
) -> None:
    client = make_client(accesskey="wrong-key")
    with pytest.raises(ApiAuthError, match=r"check source\.appid and source\.accesskey"):
        await client.get_bills(query())
    assert vendor.count(LOGIN) == 1
    assert vendor.count(GET_BILL) == 0


# --- secrets -------------------------------------------------------------------------------


def secret_echoes() -> list[Reply]:
    """Failures whose text carries the secrets back, as a debugging server might."""

    async def ret_400(request: web.Request, form: dict[str, str]) -> web.StreamResponse:
        return envelope_response(400, msg=f"bad token {form['token']} for key {ACCESSKEY}")

    async def php_dump(request: web.Request, form: dict[str, str]) -> web.StreamResponse:
        return web.Response(text=f"Warning: $_POST = {form}", status=500)

    async def not_json(request: web.Request, form: dict[str, str]) -> web.StreamResponse:
        return web.Response(text=f"token={form['token']}&accesskey={ACCESSKEY}")

    return [php_dump, not_json, ret_400]


async def test_secrets_appear_in_no_exception_log_line_or_metric(
    vendor: FakeVendor, make_client: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client(poll={"max_attempts": 3})
    vendor.script(GET_BILL, *secret_echoes())
    with pytest.raises(ApiRequestError) as permanent:
        await client.get_bills(query())
    vendor.script(LOGIN, ret(500, msg=f"login failed for {ACCESSKEY}"), ret(500), ret(500))
    with pytest.raises(ApiTransientError) as transient:
        await client.login()

    secrets = [ACCESSKEY, *vendor.issued]
    texts = [str(e) for e in (*chain(permanent.value), *chain(transient.value))]
    texts.append(caplog.text)
    texts += [f"{s.name}{s.labels}" for metric in REGISTRY.collect() for s in metric.samples]
    assert "***" in str(permanent.value)
    assert "***" in caplog.text  # the retried failures were logged, redacted
    for text in texts:
        for secret in secrets:
            assert secret not in text


# --- recordings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ({"url": "https://files.example/r.wav"}, "https://files.example/r.wav"),
        ({"filename": "r.wav", "downloadurl": "http://10.0.0.9/r.wav"}, "http://10.0.0.9/r.wav"),
        ("https://files.example/r.wav", "https://files.example/r.wav"),
        ({"url": "/recordings/r.wav"}, "{server}/recordings/r.wav"),
        ({"url": "rec/r.wav"}, "{server}/api/rec/r.wav"),
    ],
)
async def test_the_recording_address_is_read_from_a_string_or_an_object(
    vendor: FakeVendor, make_client: Factory, result: Any, expected: str
) -> None:
    vendor.script(GET_RECORD_FILE, page(result))
    address = await make_client().get_record_file_url("r.wav")
    server = vendor.url.removesuffix("/api/")
    assert address == expected.format(server=server)
    assert vendor.received[-1].form["filename"] == "r.wav"


async def test_a_recording_answer_without_an_address_is_a_response_error(
    vendor: FakeVendor, make_client: Factory
) -> None:
    vendor.script(GET_RECORD_FILE, page({"filename": "r.wav"}))
    with pytest.raises(ApiTransientError, match=r"one of url, fileurl.*keys \[filename\]"):
        await make_client(poll={"max_attempts": 1}).get_record_file_url("r.wav")


# --- the query and the page ----------------------------------------------------------------


def test_query_times_are_converted_to_the_pbx_zone() -> None:
    q = BillQuery(
        start=datetime(2024, 3, 1, 16, 0, tzinfo=UTC),
        end=datetime(2024, 3, 2, 15, 59, 59, tzinfo=UTC),
        syncflag=3,
        page=2,
        page_size=1000,
        filters=Filters(direction=2, callmethod=3, extnumber=("8001", "8002"), userid="u7"),
    )
    form = q.as_form(PBX)
    assert (form["starttime"], form["endtime"]) == ("2024-03-02 00:00:00", "2024-03-02 23:59:59")
    assert (form["syncflag"], form["currentpage"], form["itemsperpage"]) == ("3", "2", "1000")
    assert (form["direction"], form["callmethod"]) == ("2", "3")
    assert (form["extnumber"], form["userid"]) == ("8001,8002", "u7")
    assert "token" not in form


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"start": datetime(2024, 3, 1)}, "start must be timezone-aware"),
        ({"end": datetime(2024, 2, 1, tzinfo=PBX)}, "is before start"),
        ({"page": 0}, "page counts from 1"),
        ({"page_size": 1001}, "page_size must be 1..1000"),
        ({"syncflag": 4}, "syncflag must be 1, 2 or 3"),
    ],
)
def test_impossible_queries_are_refused(change: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = {
        "start": datetime(2024, 3, 1, tzinfo=PBX),
        "end": datetime(2024, 3, 2, tzinfo=PBX),
        "syncflag": 1,
        "page": 1,
        "page_size": 10,
        "filters": Filters(),
    }
    with pytest.raises(ValueError, match=message):
        BillQuery(**(fields | change))


@pytest.mark.parametrize(
    ("result", "message"),
    [
        (None, "data.result must be an object, got null"),
        ({"bills": []}, "totalitems must be a non-negative integer, got nothing"),
        ({"totalitems": -1, "bills": []}, "got -1"),
        ({"totalitems": True, "bills": []}, "got True"),
        ({"totalitems": 3, "bills": {"0": {}}}, "bills must be a list (totalitems is 3), got dict"),
        ({"totalitems": 3}, "got null"),
    ],
)
def test_a_page_that_is_not_the_documented_shape_says_what_is_wrong(
    result: Any, message: str
) -> None:
    with pytest.raises(ApiResponseError) as caught:
        BillPage.from_result(result, query())
    assert message in str(caught.value)


def test_page_numbers_the_server_left_out_are_taken_from_the_query() -> None:
    result = BillPage.from_result({"totalitems": 12.0, "bills": []}, query(page=2), 99)
    assert result == BillPage(12, 2, 10, [], raw_size=99)


# --- TLS -----------------------------------------------------------------------------------


def test_tls_options_follow_the_settings(tmp_path: Path) -> None:
    url = "https://vendor.example/api"
    assert tls_option(make_source(url)) is True
    assert tls_option(make_source(url, verify_tls=False, ca_file=tmp_path / "x.pem")) is False
    cert, _ = write_self_signed_certificate(tmp_path)
    context = tls_option(make_source(url, ca_file=cert))
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "vendor"),),)]


def test_an_unreadable_ca_file_is_a_config_error(tmp_path: Path) -> None:
    missing = make_source("https://vendor.example/api", ca_file=tmp_path / "missing.pem")
    with pytest.raises(ConfigError, match=r"source.ca_file .*missing.pem"):
        VendorApiClient(missing, PollSettings())


def test_a_renewal_margin_longer_than_the_token_lifetime_is_a_config_error() -> None:
    source = make_source(
        "http://vendor.example/", token_lifetime_seconds=60, token_renew_before_seconds=60
    )
    with pytest.raises(ConfigError, match="token_renew_before_seconds must be less"):
        VendorApiClient(source, PollSettings())


async def test_tls_is_verified_against_the_configured_ca(tmp_path: Path) -> None:
    cert, key = write_self_signed_certificate(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    poll = PollSettings(max_attempts=1)
    async with serving(FakeVendor(), server_context) as vendor:
        cases = {
            "own CA": make_source(vendor.url, ca_file=cert),
            "no verification": make_source(vendor.url, verify_tls=False),
            "system CAs": make_source(vendor.url),
        }
        clients = {name: VendorApiClient(s, poll, clock=FakeClock()) for name, s in cases.items()}
        try:
            assert (await clients["own CA"].get_bills(query())).bills == BILLS
            assert (await clients["no verification"].get_bills(query())).bills == BILLS
            with pytest.raises(ApiTransientError, match="certificate verify failed"):
                await clients["system CAs"].get_bills(query())
        finally:
            for client in clients.values():
                await client.close()


def write_self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A CA certificate for 127.0.0.1 and its key, as PEM files."""
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vendor")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "vendor.pem", directory / "vendor.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
