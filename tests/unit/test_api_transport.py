"""One HTTP exchange (`cdr_connector/api/transport.py`), pinned on its own: the statuses it
refuses (3xx, 407, the proxy's refusals of CONNECT) and those it answers, an answer's size
limit (declared or counted), its failures, its session, the egress it picks, and the small
functions that turn server text and settings into messages. Real sockets on 127.0.0.1: the
fake vendor of test_api_client.py and a proxy here that refuses everything.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from cdr_connector import __version__
from cdr_connector.api import LOGIN
from cdr_connector.api.transport import (
    CountedError,
    Egress,
    HttpAnswer,
    Transport,
    _is_loopback,
    _resolved,
    _retry_after,
    _safe_cause,
    body_excerpt,
    clean,
    default_session_factory,
    tls_option,
    warn_if_clear_text,
)
from cdr_connector.errors import (
    AnswerTooLargeError,
    ApiAuthError,
    ApiRequestError,
    ApiTransientError,
    ConfigError,
)
from cdr_connector.redaction import Redactor
from tests.unit.test_api_client import (
    ACCESSKEY,
    FakeVendor,
    Reply,
    dropped,
    make_source,
    raw,
    serving,
    stalled,
    write_self_signed_certificate,
)
from tests.unit.test_api_proxy import PROXY_USER, credentials_file, with_userinfo

LIMIT = 64 * 1024  # the smallest source.max_answer_bytes allowed
SECRET = "s3cret-Value-4242-xyz"  # 21 characters
PROXY_PASSWORD = "egress-pa55word-Q7"
FORM = {"service": LOGIN}
REDIRECT_TAIL = (
    ": not followed, as it would send the access key there; set source.api_url to the "
    "address that answers"
)
CLEAR_TEXT = (
    "source.api_url {} is plain http://: the access key and the tokens travel in clear text "
    "to it, readable and reusable by anyone on the way; use https://"
)


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


# --- helpers ------------------------------------------------------------------------------


@asynccontextmanager
async def transport_for(url: str, **overrides: Any) -> AsyncIterator[Transport]:
    source = make_source(url, **overrides)
    transport = Transport(source, default_session_factory(source, 2), Redactor.for_source(source))
    try:
        yield transport
    finally:
        await transport.close()


@asynccontextmanager
async def vendor_answering(*replies: Reply) -> AsyncIterator[FakeVendor]:
    async with serving(FakeVendor()) as vendor:
        vendor.script(LOGIN, *replies)
        yield vendor


async def failure_of(transport: Transport) -> CountedError:
    with pytest.raises(CountedError) as raised:
        await transport.post(LOGIN, FORM)
    assert str(raised.value) == raised.value.kind  # a CountedError reads as its kind
    return raised.value


def content_length(head: str) -> int:
    for line in head.split("\r\n"):
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            return int(value)
    return 0


@asynccontextmanager
async def refusing_proxy(status: int) -> AsyncIterator[tuple[str, list[str]]]:
    """A forward proxy on 127.0.0.1 that answers every request, CONNECT included, with
    `status`; yields its URL and the request lines it received."""
    seen: list[str] = []
    answer = f"HTTP/1.1 {status} Refused\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with suppress(asyncio.IncompleteReadError, ConnectionError):
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            seen.append(head.split("\r\n", 1)[0])
            await reader.readexactly(content_length(head))  # read all: no reset on close
            writer.write(answer.encode())
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", seen
    finally:
        server.close()
        await server.wait_closed()


def streamed(*parts: bytes, pause: float = 0.0, hold: asyncio.Event | None = None) -> Reply:
    """A chunked answer (no Content-Length) written in `parts`, `pause` seconds apart; with
    `hold`, the answer stays open until that event is set."""

    async def reply(request: web.Request, form: dict[str, str]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await response.prepare(request)
        for part in parts:
            await response.write(part)
            await asyncio.sleep(pause)
        if hold is not None:
            await hold.wait()
        await response.write_eof()
        return response

    return reply


def too_large(how_large: str) -> str:
    return f"{LOGIN}: the answer is larger than source.max_answer_bytes ({LIMIT}): {how_large}"


# --- statuses -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 299, 400, 404, 503])
async def test_a_status_outside_3xx_and_407_is_answered_with_its_body(status: int) -> None:
    headers = {"Retry-After": " 7 "}
    async with (
        vendor_answering(raw(b"<p>it</p>", status=status, headers=headers)) as vendor,
        transport_for(vendor.url) as transport,
    ):
        answer = await transport.post(LOGIN, FORM)
    assert answer == HttpAnswer(status, b"<p>it</p>", "text/html", 7.0)


@pytest.mark.parametrize("status", [300, 301, 307, 399])
async def test_a_3xx_is_a_redirect_not_followed_naming_the_location_without_userinfo(
    status: int,
) -> None:
    location = f"http://intruder:{SECRET}@elsewhere.example:81/x?key={ACCESSKEY}"
    async with (
        vendor_answering(raw(b"moved", status=status, headers={"Location": location})) as v,
        transport_for(v.url) as transport,
    ):
        failure = await failure_of(transport)
    assert failure.kind == "redirect"
    assert isinstance(failure.error, ApiRequestError)
    target = "http://elsewhere.example:81/x?key=***"
    assert str(failure.error) == f"{LOGIN}: HTTP {status} redirect to {target}{REDIRECT_TAIL}"
    assert v.count(LOGIN) == 1


async def test_a_redirect_without_location_says_so() -> None:
    async with (
        vendor_answering(raw(b"moved", status=302)) as vendor,
        transport_for(vendor.url) as transport,
    ):
        failure = await failure_of(transport)
    assert str(failure.error) == f"{LOGIN}: HTTP 302 redirect to no Location given{REDIRECT_TAIL}"


async def test_a_relative_location_is_named_as_the_address_it_resolves_to() -> None:
    async with (
        vendor_answering(raw(b"", status=308, headers={"Location": "../v2/?a=1"})) as v,
        transport_for(v.url) as transport,
    ):
        failure = await failure_of(transport)
    base = v.url.removesuffix("api/")
    assert str(failure.error) == f"{LOGIN}: HTTP 308 redirect to {base}v2/?a=1{REDIRECT_TAIL}"


async def test_a_407_without_a_proxy_names_a_proxy_and_the_setting_to_add() -> None:
    async with (
        vendor_answering(raw(b"who?", status=407)) as vendor,
        transport_for(vendor.url) as transport,
    ):
        failure = await failure_of(transport)
    assert failure.kind == "http_4xx"
    assert isinstance(failure.error, ApiAuthError)
    assert str(failure.error) == (
        f"{LOGIN}: a proxy refused the connector (HTTP 407 Proxy Authentication Required): "
        "set source.proxy_url and its credentials"
    )


async def test_a_407_from_the_configured_proxy_names_it_and_asks_for_credentials() -> None:
    async with (
        refusing_proxy(407) as (proxy, seen),
        transport_for("http://vendor.example/api/", proxy_url=proxy) as transport,
    ):
        failure = await failure_of(transport)
    assert seen == ["POST http://vendor.example/api/ HTTP/1.1"]
    assert isinstance(failure.error, ApiAuthError)
    assert str(failure.error) == (
        f"{LOGIN}: the proxy {proxy}/ refused the connector (HTTP 407 Proxy Authentication "
        "Required): it wants credentials: set source.proxy_credentials_file"
    )


# --- the proxy's refusals of CONNECT --------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind", "error_type"),
    [
        (500, "http_5xx", ApiTransientError),
        (502, "http_5xx", ApiTransientError),
        (408, "http_4xx", ApiTransientError),
        (429, "http_4xx", ApiTransientError),
        (403, "http_4xx", ApiRequestError),
        (499, "http_4xx", ApiRequestError),
    ],
)
async def test_a_proxy_refusing_connect_is_an_error_by_its_status(
    status: int, kind: str, error_type: type[Exception]
) -> None:
    async with (
        refusing_proxy(status) as (proxy, seen),
        transport_for("https://127.0.0.1:9/api/", proxy_url=proxy) as transport,
    ):
        failure = await failure_of(transport)
    assert seen == ["CONNECT 127.0.0.1:9 HTTP/1.1"]
    assert failure.kind == kind
    assert type(failure.error) is error_type
    api = "https://127.0.0.1:9/api/"
    message = f"{LOGIN}: the proxy {proxy}/ refused to connect to {api} (HTTP {status})"
    if error_type is ApiRequestError:
        message += ": check that the proxy allows the vendor API's address"
    assert str(failure.error) == message
    assert failure.__cause__ is None


async def test_a_proxy_refusing_connect_with_407_names_the_setting_and_hides_the_password(
    tmp_path: Path,
) -> None:
    async with refusing_proxy(407) as (proxy, _seen):
        cases = {
            "source.proxy_url": {"proxy_url": with_userinfo(proxy, PROXY_USER, PROXY_PASSWORD)},
            "source.proxy_credentials_file": {
                "proxy_url": proxy,
                "proxy_credentials_file": credentials_file(tmp_path, PROXY_PASSWORD),
            },
        }
        for setting, settings in cases.items():
            async with transport_for("https://127.0.0.1:9/api/", **settings) as transport:
                failure = await failure_of(transport)
            assert isinstance(failure.error, ApiAuthError)
            assert str(failure.error) == (
                f"{LOGIN}: the proxy {proxy}/ refused the connector (HTTP 407 Proxy "
                f"Authentication Required): fix the user:password in {setting}"
            )
            assert failure.__cause__ is None
            assert failure.__context__ is None  # aiohttp's error holds Proxy-Authorization


# --- the size limit -------------------------------------------------------------------------


async def test_an_answer_of_exactly_the_limit_is_read_declared_or_chunked() -> None:
    body = b"b" * LIMIT
    half = LIMIT // 2
    async with (
        vendor_answering(raw(body), streamed(body[:half], body[half:])) as vendor,
        transport_for(vendor.url, max_answer_bytes=LIMIT) as transport,
    ):
        declared = await transport.post(LOGIN, FORM)
        chunked = await transport.post(LOGIN, FORM)
    assert declared.body == body
    assert chunked.body == body
    assert chunked.content_type == "application/octet-stream"


async def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read() -> None:
    async with (
        vendor_answering(raw(b"b" * (LIMIT + 1))) as vendor,
        transport_for(vendor.url, max_answer_bytes=LIMIT) as transport,
    ):
        failure = await failure_of(transport)
    assert failure.kind == "too_large"
    assert isinstance(failure.error, AnswerTooLargeError)
    assert str(failure.error) == too_large(f"it declares {LIMIT + 1} bytes (Content-Length)")


async def test_a_chunked_answer_over_the_limit_is_counted_to_its_end_and_not_kept() -> None:
    parts = (b"a" * (LIMIT + 1), b"b" * 1000, b"c" * 1000, b"d" * 1000)
    async with (
        vendor_answering(streamed(*parts, pause=0.02)) as vendor,
        transport_for(vendor.url, max_answer_bytes=LIMIT) as transport,
    ):
        failure = await failure_of(transport)
    assert failure.kind == "too_large"
    assert isinstance(failure.error, AnswerTooLargeError)
    assert str(failure.error) == too_large(f"it was {LIMIT + 3001} bytes")


async def test_an_oversized_answer_that_never_ends_is_too_large_not_a_timeout() -> None:
    async with serving(FakeVendor()) as vendor:
        vendor.script(LOGIN, streamed(b"a" * (LIMIT + 1), hold=vendor.release))
        overrides = {"max_answer_bytes": LIMIT, "request_timeout_seconds": 0.3}
        async with transport_for(vendor.url, **overrides) as transport:
            failure = await failure_of(transport)
    assert failure.kind == "too_large"
    assert str(failure.error) == too_large(f"more than {LIMIT + 1} bytes, still arriving")
    assert failure.__cause__ is None
    assert failure.__suppress_context__  # the timeout is not shown as its context


# --- failures -------------------------------------------------------------------------------


async def test_no_complete_answer_within_the_timeout_is_a_transient_timeout() -> None:
    async with serving(FakeVendor()) as vendor:
        vendor.script(LOGIN, stalled(vendor))
        async with transport_for(vendor.url, request_timeout_seconds=0.2) as transport:
            failure = await failure_of(transport)
    assert failure.kind == "timeout"
    assert isinstance(failure.error, ApiTransientError)
    assert str(failure.error) == f"{LOGIN}: no complete answer within 0.2 s"
    assert isinstance(failure.__cause__, TimeoutError)


async def test_a_dropped_connection_is_a_transient_transport_error_with_its_cause() -> None:
    async with (
        vendor_answering(dropped()) as vendor,
        transport_for(vendor.url) as transport,
    ):
        failure = await failure_of(transport)
    assert failure.kind == "transport"
    assert isinstance(failure.error, ApiTransientError)
    assert str(failure.error) == f"{LOGIN}: ServerDisconnectedError: Server disconnected"
    assert isinstance(failure.__cause__, aiohttp.ServerDisconnectedError)


class FailingSession:
    """A session whose every post fails with `error`."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.closed = False

    def post(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error

    async def close(self) -> None:
        self.closed = True


def failing_transport(error: Exception) -> Transport:
    source = make_source("http://127.0.0.1:9/api/")
    return Transport(source, lambda: FailingSession(error), Redactor(ACCESSKEY))  # type: ignore[arg-type, return-value]


async def test_a_client_error_without_text_says_connection_failed_and_is_chained() -> None:
    error = aiohttp.ClientError()
    failure = await failure_of(failing_transport(error))
    assert failure.kind == "transport"
    assert str(failure.error) == f"{LOGIN}: ClientError: connection failed"
    assert failure.__cause__ is error


async def test_a_client_error_holding_a_secret_is_redacted_and_never_chained() -> None:
    error = aiohttp.ClientConnectionError(f"refused\n\tkey={ACCESSKEY}")
    failure = await failure_of(failing_transport(error))
    assert str(failure.error) == f"{LOGIN}: ClientConnectionError: refused key=***"
    assert failure.__cause__ is None
    assert failure.__context__ is None


# --- the session ----------------------------------------------------------------------------


async def test_one_session_serves_every_post_until_closed_and_close_is_idempotent() -> None:
    created: list[aiohttp.ClientSession] = []
    async with serving(FakeVendor()) as vendor:
        source = make_source(vendor.url)
        factory = default_session_factory(source, 2)

        def counted() -> aiohttp.ClientSession:
            created.append(factory())
            return created[-1]

        transport = Transport(source, counted, Redactor.for_source(source))
        await transport.post(LOGIN, FORM)
        await transport.post(LOGIN, FORM)
        assert len(created) == 1
        await transport.close()
        await transport.close()
        assert created[0].closed
        await transport.post(LOGIN, FORM)
        assert len(created) == 2
        await created[1].close()  # closed by someone else: the next post opens another
        await transport.post(LOGIN, FORM)
        assert len(created) == 3
        await transport.close()
    assert all(session.closed for session in created)
    assert vendor.count(LOGIN) == 4


async def test_sessions_carry_the_user_agent_and_the_connection_bound(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    factory = default_session_factory(make_source("http://vendor.example/api/"), 3)
    sessions = [factory(), factory()]
    try:
        assert sessions[0] is not sessions[1]
        for session in sessions:
            assert session.headers["User-Agent"] == f"cdr-connector/{__version__}"
            assert session.connector is not None
            assert session.connector.limit == 3
    finally:
        for session in sessions:
            await session.close()
    assert [r.getMessage() for r in caplog.records] == [
        CLEAR_TEXT.format("http://vendor.example/api/")
    ]


# --- Egress ---------------------------------------------------------------------------------


def test_without_a_proxy_requests_go_direct_and_the_fix_is_to_set_one() -> None:
    egress = Egress.of(make_source("https://vendor.example/api/"))
    assert egress == Egress(None, None, "set source.proxy_url and its credentials")


def test_a_proxy_url_with_userinfo_carries_its_credentials_and_never_shows_them() -> None:
    url = with_userinfo("http://proxy.example:3128", PROXY_USER, PROXY_PASSWORD)
    egress = Egress.of(make_source("https://vendor.example/api/", proxy_url=url))
    assert egress.proxy == URL("http://proxy.example:3128/").with_user(PROXY_USER).with_password(
        PROXY_PASSWORD
    )
    assert egress.shown == "http://proxy.example:3128/"
    assert egress.fix == "fix the user:password in source.proxy_url"
    assert PROXY_PASSWORD not in repr(egress)
    assert "http://proxy.example:3128/" in repr(egress)


def test_a_proxy_credentials_file_supplies_the_credentials_and_is_the_fix(
    tmp_path: Path,
) -> None:
    source = make_source(
        "https://vendor.example/api/",
        proxy_url="http://proxy.example:3128",
        proxy_credentials_file=credentials_file(tmp_path, PROXY_PASSWORD),
    )
    egress = Egress.of(source)
    assert egress.proxy is not None
    assert (egress.proxy.user, egress.proxy.password) == (PROXY_USER, PROXY_PASSWORD)
    assert egress.shown == "http://proxy.example:3128/"
    assert egress.fix == "fix the user:password in source.proxy_credentials_file"
    assert PROXY_PASSWORD not in repr(egress)


def test_a_proxy_url_without_credentials_asks_for_a_credentials_file() -> None:
    source = make_source("https://vendor.example/api/", proxy_url="http://proxy.example:3128")
    egress = Egress.of(source)
    assert egress == Egress(
        URL("http://proxy.example:3128/"),
        "http://proxy.example:3128/",
        "it wants credentials: set source.proxy_credentials_file",
    )


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_the_environment_proxy_of_the_api_scheme_is_used_and_named_as_the_fix(
    scheme: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    variable = f"{scheme.upper()}_PROXY"
    other = "HTTP_PROXY" if scheme == "https" else "HTTPS_PROXY"
    monkeypatch.setenv(variable, f"http://env-user:{PROXY_PASSWORD}@proxy.example:3128")
    monkeypatch.setenv(other, "http://other.example:1")
    egress = Egress.of(make_source(f"{scheme}://vendor.example/api/"))
    assert egress.proxy == URL(f"http://env-user:{PROXY_PASSWORD}@proxy.example:3128")
    assert egress.shown == "http://proxy.example:3128"
    assert egress.fix == f"fix the user:password in the {variable} environment variable"
    assert PROXY_PASSWORD not in repr(egress)


def test_no_proxy_bypasses_the_environment_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "vendor.example")
    egress = Egress.of(make_source("https://vendor.example/api/"))
    assert egress == Egress(None, None, "set source.proxy_url and its credentials")


# --- TLS and the clear-text warning ---------------------------------------------------------


def test_tls_options_follow_verify_tls_and_ca_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    https = f"https://user:{SECRET}@vendor.example/api/"
    assert tls_option(make_source(https)) is True
    assert caplog.records == []
    assert tls_option(make_source(https, verify_tls=False, ca_file=tmp_path / "x.pem")) is False
    assert [r.getMessage() for r in caplog.records] == [
        "TLS certificates of https://vendor.example/api/ are NOT verified "
        "(source.verify_tls is false)"
    ]
    caplog.clear()
    assert tls_option(make_source("http://vendor.example/", verify_tls=False)) is False
    assert caplog.records == []  # nothing to verify over http://
    cert, _ = write_self_signed_certificate(tmp_path)
    context = tls_option(make_source(https, ca_file=cert))
    assert not isinstance(context, bool)
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "vendor"),),)]


@pytest.mark.parametrize("content", [None, "not a certificate\n"], ids=["missing", "not-pem"])
def test_a_ca_file_that_cannot_be_loaded_is_a_config_error_naming_it(
    content: str | None, tmp_path: Path
) -> None:
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        tls_option(make_source("https://vendor.example/api/", ca_file=path))
    assert str(raised.value).startswith(
        f"source.ca_file {str(path)!r} cannot be loaded as PEM certificates: "
    )
    assert raised.value.__cause__ is not None


@pytest.mark.parametrize(
    ("url", "proxy_url", "shown"),
    [
        ("http://vendor.example/api/", None, "http://vendor.example/api/"),
        (f"http://user:{SECRET}@10.1.2.3:8080/api/", None, "http://10.1.2.3:8080/api/"),
        ("http://127.0.0.1:8080/", "http://proxy.example:3128", "http://127.0.0.1:8080/"),
        ("http://localhost:8080/", "http://proxy.example:3128", "http://localhost:8080/"),
    ],
    ids=["host", "userinfo", "loopback-through-a-proxy", "localhost-through-a-proxy"],
)
def test_plain_http_is_warned_about_once_without_userinfo(
    url: str, proxy_url: str | None, shown: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    warn_if_clear_text(make_source(url, proxy_url=proxy_url))
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, CLEAR_TEXT.format(shown))
    ]
    assert SECRET not in caplog.text


@pytest.mark.parametrize(
    "url",
    [
        "https://vendor.example/api/",
        "http://127.0.0.1:8080/",
        "http://127.3.2.1/",
        "http://[::1]:8080/",
        "http://localhost:8080/",
    ],
)
def test_https_and_direct_loopback_are_not_warned_about(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    warn_if_clear_text(make_source(url))
    assert caplog.records == []


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        (None, False),
        ("10.1.2.3", False),
        ("0.0.0.0", False),
        ("::", False),
        ("vendor.example", False),
        ("localhost.example", False),
    ],
)
def test_loopback_is_127_slash_8_the_ipv6_loopback_or_localhost(
    host: str | None, loopback: bool
) -> None:
    assert _is_loopback(host) is loopback


# --- server text ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("5", 5.0), (" 7 ", 7.0), ("0", 0.0), ("Wed, 21 Oct 2026 07:28:00 GMT", None),
     ("-1", None), ("1.5", None), ("", None), (None, None)],
)  # fmt: skip
def test_retry_after_is_read_in_whole_seconds_only(
    header: str | None, seconds: float | None
) -> None:
    assert _retry_after(header) == seconds


@pytest.mark.parametrize(
    ("location", "resolved"),
    [
        ("/v2/api", "http://127.0.0.1:8080/v2/api"),
        ("next?page=2", "http://127.0.0.1:8080/api/next?page=2"),
        ("https://other.example/x", "https://other.example/x"),
        ("http://[::1", "http://[::1"),  # unparseable: as the server wrote it
    ],
)
def test_a_location_is_resolved_against_the_api_url(location: str, resolved: str) -> None:
    assert _resolved("http://127.0.0.1:8080/api/", location) == resolved


def test_clean_makes_one_printable_line_with_secrets_replaced() -> None:
    redact = Redactor(SECRET)
    assert clean("a\x00b\r\n\tc   d\u200be ", redact) == "a b c d e"
    assert clean(f"token={SECRET}\n", redact) == "token=***"
    assert clean(" \n\t", redact) == ""


def test_clean_cuts_at_200_characters_after_replacing_secrets() -> None:
    redact = Redactor(SECRET)
    assert clean("x" * 200, redact) == "x" * 200
    assert clean("x" * 201, redact) == "x" * 197 + "..."
    # The secret is replaced first: its mask, not the secret, counts towards the 200.
    assert clean("y" * 197 + SECRET, redact) == "y" * 197 + "***"
    assert clean("y" * 198 + SECRET, redact) == "y" * 197 + "..."


def test_body_excerpt_reads_the_first_800_bytes_and_replaces_bad_encoding() -> None:
    redact = Redactor(SECRET)

    def excerpt(body: bytes) -> str:
        return body_excerpt(HttpAnswer(500, body, "text/html", None), redact)

    assert excerpt(b"") == "empty body"
    assert excerpt(b" \r\n\t") == "empty body"
    assert excerpt(b"\xff\xfeok") == "\ufffd\ufffdok"
    assert excerpt(f"<b>{SECRET}</b>".encode()) == "<b>***</b>"
    assert excerpt(b" " * 797 + b"tail") == "tai"  # the 800th byte is the last read


# --- causes ---------------------------------------------------------------------------------


class TextsError(Exception):
    """An exception whose str and repr are given, and that fails if read more than once."""

    def __init__(self, text: str, shown: str | None = None) -> None:
        super().__init__(text)
        self.text, self.shown, self.reads = text, shown, 0

    def __str__(self) -> str:
        self.reads += 1
        assert self.reads == 1, "read twice: the chain was walked in a loop"
        return self.text

    def __repr__(self) -> str:
        return self.shown if self.shown is not None else f"TextsError({self.text!r})"


def test_a_cause_without_secrets_is_chained_as_it_is() -> None:
    error, cause = TextsError("outer"), TextsError("inner")
    error.__cause__ = cause
    assert _safe_cause(error, Redactor(SECRET)) is error
    assert (error.reads, cause.reads) == (1, 1)


def test_a_cycle_in_the_chain_is_walked_once() -> None:
    a, b = TextsError("a"), TextsError("b")
    a.__cause__ = b
    b.__context__ = a
    assert _safe_cause(a, Redactor(SECRET)) is a
    assert (a.reads, b.reads) == (1, 1)


@pytest.mark.parametrize("where", ["str", "repr", "cause", "context", "behind-a-cycle"])
def test_a_chain_holding_a_secret_anywhere_is_not_chained(where: str) -> None:
    error = TextsError("connection failed")
    if where == "str":
        error = TextsError(f"failed for {SECRET}")
    elif where == "repr":
        error = TextsError("failed", shown=f"Failed(key={SECRET!r})")
    elif where == "cause":
        error.__cause__ = TextsError(SECRET)
    elif where == "context":
        error.__context__ = TextsError(SECRET)
    else:
        middle = TextsError("middle")
        error.__cause__ = middle
        middle.__cause__ = TextsError(f"url=http://u:{SECRET}@h/")
        middle.__cause__.__context__ = error
    assert _safe_cause(error, Redactor(SECRET)) is None
