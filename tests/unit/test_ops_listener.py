"""The operations listener on real sockets: /metrics negotiates gzip and OpenMetrics and exports
the process metrics; slow clients are closed after the header timeout, a crowd of them never
keeps a probe out, connections beyond the limit are closed at once, and the loop's accept errors
are logged at most once per interval."""

from __future__ import annotations

import asyncio
import gzip
import logging
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)

from cdr_connector import http, metrics
from cdr_connector.config import HttpSettings
from cdr_connector.errors import ConfigError
from cdr_connector.http import OpsListener, create_ops_app, start_ops_server

PARTIAL_REQUEST = b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow"
FULL_REQUEST = b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@pytest.fixture(scope="module", autouse=True)
def unit_source() -> None:
    metrics.init_source("unit", version="0.0.0-test", schema="fp:0123456789abcdef")


async def listening(
    eviction_grace: float = http.EVICTION_GRACE_SECONDS, **limits: float
) -> OpsListener:
    settings = HttpSettings(host="127.0.0.1", port=0, **limits)
    app = create_ops_app(lambda: None)
    return await start_ops_server(app, settings, eviction_grace=eviction_grace)


async def slow_client(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection that sends part of a request and never the rest."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(PARTIAL_REQUEST)
    await writer.drain()
    return reader, writer


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    """Whether the server closed the connection (EOF or reset) within `within` seconds."""
    try:
        return await asyncio.wait_for(reader.read(), within) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


async def probe(port: int) -> float:
    """Seconds /livez took to answer 200 on a new connection (fails beyond 1 s)."""
    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=1.0)
    async with (
        aiohttp.ClientSession(
            timeout=timeout, connector=aiohttp.TCPConnector(force_close=True)
        ) as session,
        session.get(f"http://127.0.0.1:{port}/livez") as response,
    ):
        assert response.status == 200
        assert await response.json() == {"status": "alive"}
    return time.monotonic() - started


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(auto_decompress=False) as client:
        yield client


# --- /metrics -------------------------------------------------------------------------------


async def test_metrics_is_gzip_compressed_when_the_client_accepts_it(
    session: aiohttp.ClientSession,
) -> None:
    listener = await listening()
    try:
        url = f"http://127.0.0.1:{listener.port}/metrics"
        async with session.get(url, headers={"Accept-Encoding": "gzip"}) as response:
            assert response.status == 200
            assert response.headers["Content-Encoding"] == "gzip"
            text = gzip.decompress(await response.read()).decode()
        async with session.get(url, headers={"Accept-Encoding": "identity"}) as response:
            assert "Content-Encoding" not in response.headers
            plain = await response.text()
    finally:
        await listener.close()
    assert response.headers["Content-Type"].startswith("text/plain;")
    for page in (text, plain):
        assert 'cdr_connector_api_errors_total{kind="ret_601",source="unit"}' in page


async def test_metrics_speaks_openmetrics_when_asked(session: aiohttp.ClientSession) -> None:
    listener = await listening()
    try:
        async with session.get(
            f"http://127.0.0.1:{listener.port}/metrics",
            headers={
                "Accept": "application/openmetrics-text; version=1.0.0; charset=utf-8",
                "Accept-Encoding": "identity",
            },
        ) as response:
            assert response.status == 200
            content_type = response.headers["Content-Type"]
            text = await response.text()
    finally:
        await listener.close()
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    assert text.endswith("# EOF\n")
    names = {family.name for family in openmetrics_families(text)}
    assert {"cdr_connector_build", "cdr_connector_api_errors", "process_cpu_seconds"} <= names


async def test_the_process_metrics_are_exported(session: aiohttp.ClientSession) -> None:
    listener = await listening()
    try:
        async with session.get(
            f"http://127.0.0.1:{listener.port}/metrics", headers={"Accept-Encoding": "identity"}
        ) as response:
            text = await response.text()
    finally:
        await listener.close()
    values = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith("process_")
    }
    assert values["process_resident_memory_bytes"] > 10_000_000
    assert values["process_open_fds"] >= 3
    assert values["process_max_fds"] >= values["process_open_fds"]
    assert "process_cpu_seconds_total" in values


# --- slow clients and the connection limit ----------------------------------------------------


async def test_a_connection_that_never_finishes_its_headers_is_closed_after_the_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    listener = await listening(header_timeout_seconds=0.5)
    try:
        reader, writer = await slow_client(listener.port)
        started = time.monotonic()
        assert await closed_by_server(reader, within=5.0), "the slow connection was kept"
        assert 0.4 < time.monotonic() - started < 2.0
        writer.close()
        assert caplog.messages == [
            "ops listener: closed a connection that sent no complete request within 0.5 s "
            "(http.header_timeout_seconds), or to make room for a new one beyond 100 open "
            "(http.max_connections)"
        ]
        # A client that sends its request in pieces, each within the timeout, is served.
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        for piece in (FULL_REQUEST[:10], FULL_REQUEST[10:-3], FULL_REQUEST[-3:]):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.1)
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2.0)
        assert answer.startswith(b"HTTP/1.1 200")
        writer.close()
    finally:
        await listener.close()


async def test_a_crowd_of_slow_clients_beyond_the_limit_never_keeps_a_probe_out(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.WARNING, logger="cdr_connector.http")
    listener = await listening(max_connections=20, header_timeout_seconds=30.0, eviction_grace=0.2)
    crowd = []
    try:
        for _ in range(60):
            crowd.append(await slow_client(listener.port))
        await asyncio.sleep(0.3)  # the grace: a slow client past it is pushed out by a new one
        for _ in range(5):
            assert await probe(listener.port) < 1.0
        # Beyond the first 20, slow clients were closed at once or pushed out; at most 20 remain.
        closed = [await closed_by_server(reader, within=0.2) for reader, _ in crowd]
        assert 0 < closed.count(False) <= 20, closed
        assert all(closed[20:]), closed
    finally:
        for _, writer in crowd:
            writer.close()
        await listener.close()
    # One line for the first connection closed at once, one for the first pushed out; the rest
    # are counted, not logged.
    lines = [r.getMessage() for r in caplog.records]
    assert 1 <= len(lines) <= 2, lines
    assert all("http.max_connections" in line for line in lines), lines


async def test_beyond_the_limit_a_new_connection_is_closed_at_once_when_all_have_asked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    listener = await listening(max_connections=5, header_timeout_seconds=30.0, eviction_grace=0.2)
    kept = []
    try:
        for _ in range(5):  # kept alive after their answer: not slow, not closed for room
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
            writer.write(FULL_REQUEST)
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
            kept.append((reader, writer))
        # Past the eviction grace: only having sent their request keeps them from eviction.
        await asyncio.sleep(0.3)
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(FULL_REQUEST)
        started = time.monotonic()
        assert await closed_by_server(reader, within=2.0)
        assert time.monotonic() - started < 0.5
        assert caplog.messages == [
            "ops listener: closed a new connection at once: 5 connections are open "
            "(http.max_connections), each busy with a request or connected within the last "
            "second"
        ]
        writer.close()
        kept.pop()[1].close()
        await asyncio.sleep(0.1)
        assert await probe(listener.port) < 1.0
    finally:
        for _, writer in kept:
            writer.close()
        await listener.close()


# --- the accept-error log ---------------------------------------------------------------------


async def test_accept_errors_are_logged_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="cdr_connector.http")
    loop = asyncio.get_running_loop()
    listener = await listening()
    try:
        handler = loop.get_exception_handler()
        assert handler is not None
        for _ in range(500):
            handler(
                loop,
                {
                    "message": "socket.accept() out of system resource",
                    "exception": OSError(24, "Too many open files"),
                },
            )
    finally:
        await listener.close()
    assert loop.get_exception_handler() is None, "the loop's handler was not put back"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1, lines
    assert "Too many open files" in lines[0]


async def test_a_throttled_log_reports_how_many_it_left_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="cdr_connector.http")
    throttled = http.ThrottledLog(asyncio.get_running_loop(), "trouble: %s", interval=0.2)
    for number in range(100):
        throttled.event(number)
    await asyncio.sleep(0.3)
    throttled.event("after")  # the interval that began with the report is not over yet
    await asyncio.sleep(0.3)
    throttled.close()
    assert [r.getMessage() for r in caplog.records] == [
        "trouble: 0",
        "trouble: 99; 99 more times in the last 0.2 s",
        # Counted from the last report, not from the first line.
        "trouble: after; 1 more times in the last 0.2 s",
    ]


# --- start and stop ---------------------------------------------------------------------------


async def test_a_port_in_use_is_a_settings_error_naming_the_address_and_frees_what_it_set_up() -> (
    None
):
    first = await listening()
    cleaned: list[str] = []

    async def on_cleanup(_app: object) -> None:
        cleaned.append("second")

    second = create_ops_app(lambda: None)
    second.on_cleanup.append(on_cleanup)
    try:
        with pytest.raises(ConfigError) as refused:
            await start_ops_server(second, HttpSettings(host="127.0.0.1", port=first.port))
    finally:
        await first.close()

    assert str(refused.value).startswith(
        f"http.host/http.port: cannot listen on 127.0.0.1:{first.port}: "
    )
    assert str(refused.value).endswith(
        "; stop whatever uses that address or choose another http.port"
    )
    assert cleaned == ["second"]


async def test_a_closed_listener_frees_its_port() -> None:
    listener = await listening()
    port = listener.port
    await probe(port)

    await listener.close()

    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
    again = await start_ops_server(
        create_ops_app(lambda: None), HttpSettings(host="127.0.0.1", port=port)
    )
    await again.close()


async def test_the_listener_is_named_by_its_url_with_the_port_it_got() -> None:
    listener = await listening()
    try:
        sites = listener._runner.sites
        assert [site.name for site in sites] == [f"http://127.0.0.1:{listener.port}"]
        assert listener.port > 0
    finally:
        await listener.close()


async def test_closing_the_listener_closes_a_connection_still_sending_its_headers_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    listener = await listening(header_timeout_seconds=30.0)
    reader, writer = await slow_client(listener.port)
    await asyncio.sleep(0.05)

    await listener.close()

    try:
        assert await closed_by_server(reader, within=1.0)
    finally:
        writer.close()
    assert caplog.messages == [], "it was not slow: the listener went away"


async def test_a_slow_client_line_still_pending_at_close_is_never_logged(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http, "_LOG_INTERVAL_SECONDS", 0.3)
    listener = await listening(header_timeout_seconds=0.05)
    clients = [await slow_client(listener.port) for _ in range(2)]
    for reader, _writer in clients:
        assert await closed_by_server(reader, within=1.0)

    await listener.close()
    await asyncio.sleep(0.4)

    for _reader, writer in clients:
        writer.close()
    assert len(caplog.messages) == 1, "the first line at once; the second was to wait 0.3 s"
    assert caplog.messages[0].startswith("ops listener: closed a connection that sent no")


async def test_a_client_that_asks_and_leaves_is_not_logged_as_slow(
    caplog: pytest.LogCaptureFixture,
) -> None:
    listener = await listening(header_timeout_seconds=30.0)
    try:
        for _ in range(3):
            await probe(listener.port)
        await asyncio.sleep(0.05)
    finally:
        await listener.close()
    assert caplog.messages == []


async def test_a_kept_alive_connection_that_asked_is_not_logged_as_slow_at_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    listener = await listening(header_timeout_seconds=30.0)
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    try:
        writer.write(FULL_REQUEST)
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        await listener.close()
    finally:
        writer.close()
    assert caplog.messages == []


async def test_a_connection_the_client_closed_is_forgotten_by_the_server() -> None:
    listener = await listening()
    try:
        for _ in range(3):
            await probe(listener.port)
        await asyncio.sleep(0.05)
        server = listener._runner.server
        assert server is not None
        assert server.connections == []
    finally:
        await listener.close()
