"""No redirect is followed: a 307 or 308 would have the client post the same form, access key
and token included, to wherever the `Location` points. On real sockets: the vendor on
127.0.0.1 redirects to another server on another port (over http, and from https down to
http); that server must receive nothing, and the client stops with a permanent error that
names the `Location` without its user:password part.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from cdr_connector import checks
from cdr_connector.api import GET_BILL, LOGIN, VendorApiClient
from cdr_connector.config import PollSettings, load_settings
from cdr_connector.errors import ApiRequestError
from tests.fakes import FakeClock
from tests.unit.test_api_client import (
    ACCESSKEY,
    APPID,
    FakeVendor,
    errors_total,
    make_source,
    query,
    raw,
    requests_total,
    serving,
)
from tests.unit.test_api_proxy import vendor_over

ELSEWHERE_PASSWORD = "elsewhere-pa55word"


@asynccontextmanager
async def elsewhere() -> AsyncIterator[tuple[str, list[str]]]:
    """Another server (another port) that records every request it receives, whatever it is."""
    received: list[str] = []

    async def record(request: web.Request) -> web.StreamResponse:
        received.append(f"{request.method} {request.path_qs} {await request.text()}")
        return web.Response(text="the access key is mine now")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"127.0.0.1:{runner.addresses[0][1]}", received
    finally:
        await runner.cleanup()


def redirect(status: int, location: str) -> Any:
    return raw(b"moved", status=status, headers={"Location": location})


ROUTES = [
    pytest.param("http", id="to-another-host"),
    pytest.param("https", id="https-to-http"),
]


@pytest.mark.parametrize("status", [307, 308])
@pytest.mark.parametrize("scheme", ROUTES)
@pytest.mark.parametrize("service", [LOGIN, GET_BILL])
async def test_a_redirect_is_not_followed_and_nothing_reaches_its_target(
    status: int, scheme: str, service: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with elsewhere() as (other, received), vendor_over(scheme, tmp_path) as (vendor, ca):
        location = f"http://intruder:{ELSEWHERE_PASSWORD}@{other}/collect?from=vendor"
        vendor.script(service, redirect(status, location))
        source = make_source(vendor.url, ca_file=ca)
        client = VendorApiClient(source, PollSettings(max_attempts=3), clock=FakeClock())
        try:
            with pytest.raises(ApiRequestError) as refused:
                await client.get_bills(query())
        finally:
            await client.close()
    assert received == []  # the other host heard nothing: no access key, no token
    message = str(refused.value)
    assert f"HTTP {status}" in message
    assert f"http://{other}/collect?from=vendor" in message  # the Location, named
    assert ELSEWHERE_PASSWORD not in message  # without its user:password part
    assert "source.api_url" in message  # what to fix
    assert vendor.count(service) == 1  # permanent: not retried
    name = source.name
    assert errors_total(name, "redirect") == 1
    label = "login" if service == LOGIN else "getbill"
    assert requests_total(name, label, "permanent") == 1
    assert ACCESSKEY not in caplog.text


@pytest.mark.parametrize("status", [307, 308])
@pytest.mark.parametrize("scheme", ROUTES)
async def test_check_reports_a_redirect_and_sends_nothing_to_its_target(
    status: int, scheme: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checks, "check_kafka", lambda settings: "not checked here")
    async with elsewhere() as (other, received), vendor_over(scheme, tmp_path) as (vendor, ca):
        vendor.script(LOGIN, redirect(status, f"http://{other}/login"))
        settings = load_settings(
            source={
                "name": "redirect-check",
                "api_url": vendor.url,
                "appid": APPID,
                "accesskey": ACCESSKEY,
                "ca_file": ca,
            },
            poll={"max_attempts": 3},
        )
        lines: list[str] = []
        code = await checks.run_checks(settings, out=lines.append)
    assert code == 1
    assert received == []
    [line] = [line for line in lines if "vendor API login" in line]
    assert line.startswith("FAIL vendor API login:")
    assert f"HTTP {status}" in line
    assert f"http://{other}/login" in line
    assert vendor.count(LOGIN) == 1


async def test_a_relative_location_is_named_as_the_address_it_resolves_to(tmp_path: Path) -> None:
    async with serving(FakeVendor()) as vendor:
        vendor.script(LOGIN, redirect(301, "/v2/api"))
        client = VendorApiClient(make_source(vendor.url), PollSettings(), clock=FakeClock())
        try:
            with pytest.raises(ApiRequestError) as refused:
                await client.login()
        finally:
            await client.close()
    host = vendor.url.split("/")[2]
    assert f"http://{host}/v2/api" in str(refused.value)
