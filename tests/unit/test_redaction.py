"""No form of any secret leaves the connector: every channel a vendor's text can reach is
planted with every form of every secret, and every output is searched for each of them.

Secrets: the access key, the token, the password in `source.api_url`, the proxy's password,
and the Basic credentials built from those passwords. Forms: as is, URL-encoded (`quote`
with and without `/` kept, `quote_plus`), JSON-escaped (also PHP's `\\/`). Cuts: a text cut
inside a secret (the 800-byte body excerpt, the 200-character message, the 60-character
quote of a page value, the 80-character quote of a bill value in a dead letter) must not show
its first 8 characters either.

Channels, on real sockets (the vendor and a forward proxy on 127.0.0.1): `ret` 400 and 500
messages, `data.desc`, HTTP 5xx and 4xx bodies, bodies that are not JSON, envelope keys,
GetBill values quoted by `BillPage.from_result`, transport errors (a broken status line),
redirect `Location`s; the connector's log (caplog), `cdr-connector check` output, /readyz
through the pipeline's status, and the `cdr.error` header of dead letters.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import quote, quote_plus

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from cdr_connector import checks
from cdr_connector.api import GET_BILL, LOGIN, BillPage, VendorApiClient
from cdr_connector.avro import SingleObjectEncoder
from cdr_connector.clock import SystemClock
from cdr_connector.config import Settings
from cdr_connector.errors import CdrConnectorError
from cdr_connector.http import create_ops_app
from cdr_connector.pipeline import Pipeline
from cdr_connector.poller import Poller
from cdr_connector.redaction import MASK, PARTIAL_MIN, Redactor
from tests.fakes import FakeClock, FakeRecorder, FakeSink, bill
from tests.unit.forward_proxy import forward_proxy
from tests.unit.test_api_client import (
    FakeVendor,
    Reply,
    envelope_response,
    json_body,
    page,
    query,
    raw,
    ret,
    serving,
)

APPID = "redaction-appid"
ACCESSKEY = 'ak/SECRET+5f1c 9e07&k="v"'
TOKEN = 'tok/SECRET+77 a1"b"'
URL_USER, URL_PASSWORD = "vendoruser", 'url/Pa55 w0rd+"u"'
PROXY_USER, PROXY_PASSWORD = "egress", 'pr0xy/Pa55 w0rd+"p"'


def basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


SECRETS = {
    "accesskey": ACCESSKEY,
    "token": TOKEN,
    "api_url password": URL_PASSWORD,
    "proxy password": PROXY_PASSWORD,
    "api_url Basic credentials": basic(URL_USER, URL_PASSWORD),
    "proxy Basic credentials": basic(PROXY_USER, PROXY_PASSWORD),
}
FORMS: dict[str, Callable[[str], str]] = {
    "raw": lambda s: s,
    "quote": lambda s: quote(s, safe=""),
    "quote keeping /": quote,
    "quote_plus": quote_plus,
    "json": lambda s: json.dumps(s)[1:-1],
    "php json": lambda s: json.dumps(s)[1:-1].replace("/", "\\/"),
}
PLANTED = [
    (f"{name} {form}", FORMS[form](secret)) for name, secret in SECRETS.items() for form in FORMS
]
# A cut leaves this many characters of the secret before it.
CUT_INSIDE = 10


def leaks(text: str) -> list[str]:
    """The planted forms whose first PARTIAL_MIN characters appear in `text`."""
    lowered = text.lower()
    return [label for label, form in PLANTED if form[:PARTIAL_MIN].lower() in lowered]


def texts_of(error: BaseException) -> Iterator[str]:
    current: BaseException | None = error
    while current is not None:
        yield str(current)
        yield repr(current)
        current = current.__cause__ or current.__context__
    yield "".join(traceback.format_exception(error))


def the_connectors_log(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(
        logging.Formatter("%(message)s").format(record)
        for record in caplog.records
        if record.name.startswith("cdr_connector")
    )


# --- the scene: the vendor behind a forward proxy, a client that knows every secret ------


async def login_with_the_token(request: web.Request, form: dict[str, str]) -> web.StreamResponse:
    return envelope_response(200, result={"token": TOKEN})


@dataclass
class Scene:
    vendor: FakeVendor
    settings: Settings

    def client(self) -> VendorApiClient:
        poll = self.settings.poll
        return VendorApiClient(self.settings.source, poll, clock=FakeClock(), rng=random.Random(2))


@asynccontextmanager
async def scene() -> AsyncIterator[Scene]:
    async with (
        serving(FakeVendor()) as vendor,
        forward_proxy((PROXY_USER, PROXY_PASSWORD)) as proxy,
    ):
        vendor.valid_tokens.add(TOKEN)
        host = vendor.url.removeprefix("http://")
        settings = Settings(
            source={
                "name": "redaction",
                "appid": APPID,
                "accesskey": ACCESSKEY,
                "api_url": f"http://{URL_USER}:{quote(URL_PASSWORD, safe='')}@{host}",
                "proxy_url": proxy.url.replace(
                    "http://", f"http://{PROXY_USER}:{quote(PROXY_PASSWORD, safe='')}@"
                ),
                "request_timeout_seconds": 5,
            },
            poll={"max_attempts": 2, "retry_initial_seconds": 0.001, "retry_max_seconds": 0.002},
        )  # type: ignore[arg-type]
        yield Scene(vendor, settings)
        assert proxy.seen and all(p.allowed for p in proxy.seen)


# --- the client's channels ---------------------------------------------------------------


def desc_only(text: str) -> Reply:
    async def reply(request: web.Request, form: dict[str, str]) -> web.StreamResponse:
        return envelope_response(200, status=1, desc=text)

    return reply


def broken_status_line(text: str) -> Reply:
    async def reply(request: web.Request, form: dict[str, str]) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.write(b"HTTP/1.1 2x0 " + text.encode() + b"\r\n\r\n")
        request.transport.close()
        return web.Response()

    return reply


def redirect_to(text: str) -> Reply:
    return raw(b"moved", status=307, headers={"Location": f"http://elsewhere.invalid/?q={text}"})


# The replies that carry `text`, as many as GetBill's attempts take.
CHANNELS: dict[str, Callable[[str], list[Reply]]] = {
    "ret 400 msg": lambda text: [ret(400, msg=text)],
    "ret 500 msg": lambda text: [ret(500, msg=text)] * 2,
    "data.desc": lambda text: [desc_only(text)],
    "HTTP 502 body": lambda text: [raw(text.encode(), status=502)] * 2,
    "HTTP 404 body": lambda text: [raw(text.encode(), status=404)],
    "body not JSON": lambda text: [raw(text.encode())] * 2,
    "envelope keys": lambda text: [json_body({text: 1})] * 2,
    "GetBill totalitems": lambda text: [page({"totalitems": text, "bills": []})] * 2,
    "transport error": lambda text: [broken_status_line(text)] * 2,
    "redirect Location": lambda text: [redirect_to(text)],
}
# Texts cut inside the secret by each cut, CUT_INSIDE characters after its start.
CUTS: dict[str, Callable[[str], list[Reply]]] = {
    "ret 400 msg cut at 200": lambda form: [ret(400, msg="x" * (197 - CUT_INSIDE) + form)],
    "HTTP 502 body cut at 200": lambda form: (
        [raw(("x" * (197 - CUT_INSIDE) + form).encode(), status=502)] * 2
    ),
    "HTTP 502 body cut at 800 bytes": lambda form: (
        [raw((" " * (800 - CUT_INSIDE) + form + " and on").encode(), status=502)] * 2
    ),
    "GetBill value cut at 60": lambda form: (
        [page({"totalitems": "y" * (57 - 1 - CUT_INSIDE) + form, "bills": []})] * 2
    ),
}


async def outputs_of(
    vendor: FakeVendor, client: VendorApiClient, replies: list[Reply]
) -> list[str]:
    vendor.script(GET_BILL, *replies)
    with pytest.raises(CdrConnectorError) as failed:
        await client.get_bills(query())
    assert not vendor.queued[GET_BILL]
    return list(texts_of(failed.value))


@pytest.mark.parametrize("channel", list(CHANNELS))
async def test_no_form_of_a_secret_in_client_errors_or_the_log(
    channel: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with scene() as current:
        current.vendor.script(LOGIN, login_with_the_token)
        client = current.client()
        try:
            found: dict[str, list[str]] = {}
            for label, form in PLANTED:
                texts = await outputs_of(
                    current.vendor, client, CHANNELS[channel](f"echo<{form}>end")
                )
                assert any(MASK in text for text in texts), f"{label}: nothing was redacted"
                found[label] = [leak for text in texts for leak in leaks(text)]
        finally:
            await client.close()
    assert {label: leaked for label, leaked in found.items() if leaked} == {}
    assert leaks(the_connectors_log(caplog)) == []


@pytest.mark.parametrize("cut", list(CUTS))
async def test_a_cut_through_a_secret_shows_none_of_it(
    cut: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with scene() as current:
        current.vendor.script(LOGIN, login_with_the_token)
        client = current.client()
        try:
            found: dict[str, list[str]] = {}
            for label, form in PLANTED:
                texts = await outputs_of(current.vendor, client, CUTS[cut](form))
                found[label] = [leak for text in texts for leak in leaks(text)]
        finally:
            await client.close()
    assert {label: leaked for label, leaked in found.items() if leaked} == {}
    assert leaks(the_connectors_log(caplog)) == []


def test_bill_page_quotes_no_secret_of_the_redactor_it_is_given() -> None:
    redactor = Redactor(ACCESSKEY)
    for form in (f for label, f in PLANTED if label.startswith("accesskey")):
        for value in (form, "z" * (57 - 1 - CUT_INSIDE) + form):
            with pytest.raises(CdrConnectorError) as failed:
                BillPage.from_result({"totalitems": value, "bills": []}, query(), redact=redactor)
            assert leaks(str(failed.value)) == []


# --- check ---------------------------------------------------------------------------------


async def test_check_prints_no_form_of_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checks, "check_kafka", lambda settings: "not checked here")
    lines: list[str] = []
    async with scene() as current:
        current.vendor.script(LOGIN, login_with_the_token)
        assert await checks.run_checks(current.settings, out=lines.append) == 0
        # A refused login gets no token: the token is no secret `check` knows then.
        for _label, form in (p for p in PLANTED if not p[0].startswith("token")):
            current.vendor.script(LOGIN, ret(601, msg=f"echo<{form}>end"))
            assert await checks.run_checks(current.settings, out=lines.append) == 1
    logins = [line for line in lines if "vendor API login" in line]
    assert logins[0].startswith("ok   vendor API login: logged in to http://127.0.0.1:")
    assert all(line.startswith("FAIL vendor API login:") for line in logins[1:])
    assert all(MASK in line for line in logins[1:])
    assert [leak for leak in leaks("\n".join(lines)) if not leak.startswith("token")] == []
    assert leaks(logins[0]) == []


# --- the pipeline: /readyz and dead letters -------------------------------------------------


def pipeline_over(current: Scene, client: VendorApiClient, sink: FakeSink) -> Pipeline:
    settings = current.settings
    recorder = FakeRecorder()
    poller = Poller(client, settings.source, settings.poll, SystemClock(), recorder)
    return Pipeline(
        settings,
        poller,
        sink,
        SingleObjectEncoder(),
        SystemClock(),
        recorder=recorder,
        state_reader=lambda _settings, _key: None,
        redactor=client.redactor,
    )


async def readyz_body(pipeline: Pipeline) -> str:
    async with TestClient(TestServer(create_ops_app(pipeline.status.not_ready_reason))) as http:
        answer = await http.get("/readyz")
        assert answer.status == 503
        return await answer.text()


async def test_readyz_reasons_and_dead_letters_hold_no_form_of_a_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    outputs: dict[str, list[str]] = {}
    async with scene() as current:
        current.vendor.script(LOGIN, login_with_the_token)
        client = current.client()
        sink = FakeSink()
        try:
            for number, (label, form) in enumerate(PLANTED, start=1):
                # The start-up sweep's page is refused, quoting the secret: the reason.
                pipeline = pipeline_over(current, client, sink)
                current.vendor.script(GET_BILL, ret(400, msg=f"echo<{form}>end"))
                with pytest.raises(CdrConnectorError):
                    await pipeline.run()
                reason = await readyz_body(pipeline)
                assert MASK in reason
                # Bills whose start time quotes the secret, whole and cut: dead letters.
                pipeline = pipeline_over(current, client, sink)
                await pipeline.start()
                bad = [
                    bill(number * 10 + 1, starttime=f"echo<{form}>end"),
                    bill(number * 10 + 2, starttime="s" * (77 - 1 - CUT_INSIDE) + form),
                ]
                current.vendor.script(GET_BILL, page({"totalitems": 2, "bills": bad}))
                await pipeline.recover()
                outputs[label] = [reason]
        finally:
            await client.close()
    errors = [
        value.decode()
        for message in sink.on("cdr.calls.dlq")
        for name, value in message.headers
        if name == "cdr.error" and isinstance(value, bytes)
    ]
    assert len(errors) == 2 * len(PLANTED)
    assert all(MASK in error for error in errors)
    assert leaks("\n".join(errors)) == []
    assert {label: leaks(" ".join(texts)) for label, texts in outputs.items()} == {
        label: [] for label in outputs
    }
    assert leaks(the_connectors_log(caplog)) == []


# --- the redactor itself --------------------------------------------------------------------


def test_every_form_and_every_cut_of_a_secret_is_replaced() -> None:
    redactor = Redactor(*SECRETS.values())
    for label, form in PLANTED:
        assert redactor(f"a {form} b") == f"a {MASK} b", label
        assert redactor(f"a {form.lower()} b") == f"a {MASK} b", label
        for size in range(PARTIAL_MIN, len(form)):
            assert redactor(f"a {form[:size]}") == f"a {MASK}", (label, size)
            assert redactor(f"a {form[:size]}... b") == f"a {MASK}... b", (label, size)
        assert redactor.cut("x" * 20 + form, 20 + CUT_INSIDE + 3) == "x" * 20 + MASK + "..."


def test_short_prefixes_and_unrelated_text_are_left_alone() -> None:
    redactor = Redactor(ACCESSKEY)
    assert redactor("ak/SECR") == "ak/SECR"  # 7 characters: too short to be told apart
    assert redactor("nothing secret here...") == "nothing secret here..."
    assert Redactor()("ak/SECRET") == "ak/SECRET"


def test_the_four_newest_tokens_are_remembered_and_older_ones_forgotten() -> None:
    redactor = Redactor()
    tokens = [f"token-number-{i:04d}" for i in range(6)]
    for token in tokens:
        redactor.add_token(token)
    assert redactor(" ".join(tokens[-4:])) == " ".join([MASK] * 4)
    assert redactor(" ".join(tokens[:2])) == " ".join(tokens[:2])


def test_a_short_secret_is_replaced_only_where_it_stands_alone() -> None:
    redactor = Redactor("k")
    assert redactor("ok   vendor API login: logged in as appid a") == (
        "ok   vendor API login: logged in as appid a"
    )
    assert redactor("accesskey=k&appid=a") == f"accesskey={MASK}&appid=a"
    assert redactor("(ret 601: bad key k)") == f"(ret 601: bad key {MASK})"
