"""The vendor API through an egress proxy, on real sockets: a forward proxy of the tests'
own (`forward_proxy.py`) between the client and a fake vendor on 127.0.0.1, over http
(absolute-form requests) and https (CONNECT tunnels), configured by `source.proxy_url` or by
the HTTPS_PROXY / HTTP_PROXY / NO_PROXY environment variables. A wrong proxy password is a
permanent error that names the proxy and the setting to fix, and the password never shows.
"""

from __future__ import annotations

import logging
import random
import ssl
import traceback
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from cdr_connector import checks
from cdr_connector.api import GET_BILL, LOGIN, VendorApiClient
from cdr_connector.config import PollSettings, load_settings
from cdr_connector.errors import ApiAuthError, ConfigError
from tests.fakes import FakeClock
from tests.unit.forward_proxy import ForwardProxy, forward_proxy
from tests.unit.test_api_client import (
    ACCESSKEY,
    APPID,
    BILLS,
    FakeVendor,
    chain,
    make_source,
    query,
    serving,
    write_self_signed_certificate,
)

PROXY_USER = "cdr-egress"
PROXY_PASSWORD = "pr0xy/Pa ss+w0rd&x=1"
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY")


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@asynccontextmanager
async def vendor_over(scheme: str, tmp_path: Path) -> AsyncIterator[tuple[FakeVendor, Path | None]]:
    """A fake vendor over http, or over https with a certificate for 127.0.0.1 (and its CA)."""
    if scheme == "http":
        async with serving(FakeVendor()) as vendor:
            yield vendor, None
        return
    cert, key = write_self_signed_certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    async with serving(FakeVendor(), context) as vendor:
        yield vendor, cert


@asynccontextmanager
async def client_for(
    vendor: FakeVendor, ca_file: Path | None, **source: Any
) -> AsyncIterator[VendorApiClient]:
    settings = make_source(vendor.url, ca_file=ca_file, **source)
    client = VendorApiClient(
        settings, PollSettings(max_attempts=2), clock=FakeClock(), rng=random.Random(1)
    )
    try:
        yield client
    finally:
        await client.close()


def with_userinfo(url: str, user: str, password: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{rest}"


def credentials_file(tmp_path: Path, password: str) -> Path:
    path = tmp_path / "proxy-credentials"
    path.write_text(f"{PROXY_USER}:{password}\n", encoding="utf-8")
    return path


def proxy_settings(proxy: ForwardProxy, how: str, password: str, tmp_path: Path) -> dict[str, Any]:
    if how == "userinfo":
        return {"proxy_url": with_userinfo(proxy.url, PROXY_USER, password)}
    return {"proxy_url": proxy.url, "proxy_credentials_file": credentials_file(tmp_path, password)}


def expect_through(proxy: ForwardProxy, vendor: FakeVendor, scheme: str) -> None:
    assert proxy.seen, "nothing went through the proxy"
    assert all(p.allowed for p in proxy.seen)
    if scheme == "https":
        port = vendor.url.split(":")[2].split("/")[0]
        assert {(p.method, p.target) for p in proxy.seen} == {("CONNECT", f"127.0.0.1:{port}")}
    else:
        assert {(p.method, p.target) for p in proxy.seen} == {("POST", vendor.url)}
        assert len(proxy.seen) == 2  # the login and the page, each through the proxy
    assert [r.service for r in vendor.received] == [LOGIN, GET_BILL]


def texts_of(error: BaseException) -> Iterator[str]:
    for link in chain(error):
        yield str(link)
        yield repr(link)
    yield "".join(traceback.format_exception(error))


# --- source.proxy_url --------------------------------------------------------------------


@pytest.mark.parametrize("how", ["userinfo", "credentials_file"])
@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_login_and_pages_go_through_the_configured_proxy(
    scheme: str, how: str, tmp_path: Path
) -> None:
    async with (
        vendor_over(scheme, tmp_path) as (vendor, ca_file),
        forward_proxy((PROXY_USER, PROXY_PASSWORD)) as proxy,
    ):
        settings = proxy_settings(proxy, how, PROXY_PASSWORD, tmp_path)
        async with client_for(vendor, ca_file, **settings) as client:
            page = await client.get_bills(query())
    assert page.bills == BILLS
    expect_through(proxy, vendor, scheme)
    assert vendor.received[0].form["accesskey"] == ACCESSKEY


@pytest.mark.parametrize("how", ["userinfo", "credentials_file"])
@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_a_wrong_proxy_password_stops_with_the_proxy_named_and_no_password_shown(
    scheme: str,
    how: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(checks, "check_kafka", lambda settings: "not checked here")
    wrong = "wr0ng/" + PROXY_PASSWORD
    async with (
        vendor_over(scheme, tmp_path) as (vendor, ca_file),
        forward_proxy((PROXY_USER, PROXY_PASSWORD)) as proxy,
    ):
        settings = proxy_settings(proxy, how, wrong, tmp_path)
        async with client_for(vendor, ca_file, **settings) as client:
            with pytest.raises(ApiAuthError) as refused:
                await client.get_bills(query())
        lines: list[str] = []
        checked = load_settings(
            source={
                "api_url": vendor.url,
                "name": "proxy-check",
                "appid": APPID,
                "accesskey": ACCESSKEY,
                "ca_file": ca_file,
                **settings,
            },
            poll={"max_attempts": 1},
        )
        await checks.run_checks(checked, out=lines.append)
    message = str(refused.value)
    assert proxy.url.removeprefix("http://") in message  # the proxy is named
    assert "407" in message
    setting = "source.proxy_url" if how == "userinfo" else "source.proxy_credentials_file"
    assert setting in message
    assert len(proxy.seen) == 2  # once by the client, once by `check`: never retried
    assert vendor.received == []
    [line] = [line for line in lines if "vendor API login" in line]
    assert line.startswith("FAIL vendor API login:")
    assert "407" in line
    for text in [*texts_of(refused.value), caplog.text, line]:
        assert wrong not in text
        assert quote(wrong, safe="") not in text


# --- the environment ----------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_the_proxy_environment_variables_are_honoured(
    scheme: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with (
        vendor_over(scheme, tmp_path) as (vendor, ca_file),
        forward_proxy((PROXY_USER, PROXY_PASSWORD)) as proxy,
    ):
        variable = "HTTPS_PROXY" if scheme == "https" else "HTTP_PROXY"
        monkeypatch.setenv(variable, with_userinfo(proxy.url, PROXY_USER, PROXY_PASSWORD))
        async with client_for(vendor, ca_file) as client:
            page = await client.get_bills(query())
    assert page.bills == BILLS
    expect_through(proxy, vendor, scheme)


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_no_proxy_bypasses_the_proxy_of_the_environment(
    scheme: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with (
        vendor_over(scheme, tmp_path) as (vendor, ca_file),
        forward_proxy((PROXY_USER, PROXY_PASSWORD)) as proxy,
    ):
        monkeypatch.setenv("HTTPS_PROXY" if scheme == "https" else "HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        async with client_for(vendor, ca_file) as client:
            page = await client.get_bills(query())
    assert page.bills == BILLS
    assert proxy.seen == []
    assert [r.service for r in vendor.received] == [LOGIN, GET_BILL]


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_a_wrong_password_in_the_environment_names_the_variable_to_fix(
    scheme: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "wr0ng/" + PROXY_PASSWORD
    async with (
        vendor_over(scheme, tmp_path) as (vendor, ca_file),
        forward_proxy((PROXY_USER, PROXY_PASSWORD)) as proxy,
    ):
        variable = "HTTPS_PROXY" if scheme == "https" else "HTTP_PROXY"
        monkeypatch.setenv(variable, with_userinfo(proxy.url, PROXY_USER, wrong))
        async with client_for(vendor, ca_file) as client:
            with pytest.raises(ApiAuthError) as refused:
                await client.get_bills(query())
    message = str(refused.value)
    assert proxy.url.removeprefix("http://") in message
    assert variable in message
    assert len(proxy.seen) == 1
    for text in texts_of(refused.value):
        assert wrong not in text
        assert quote(wrong, safe="") not in text


# --- the settings -------------------------------------------------------------------------


def source_with(**proxy: Any) -> dict[str, Any]:
    return {"source": {"appid": "a", "accesskey": ACCESSKEY, **proxy}}


def test_proxy_credentials_come_from_the_url_or_a_file_and_stay_out_of_the_settings_repr(
    tmp_path: Path,
) -> None:
    in_url = load_settings(
        **source_with(proxy_url=with_userinfo("http://proxy.example:3128", "u", PROXY_PASSWORD))
    ).source
    in_file = load_settings(
        **source_with(
            proxy_url="http://proxy.example:3128",
            proxy_credentials_file=credentials_file(tmp_path, PROXY_PASSWORD),
        )
    ).source
    for source, user in ((in_url, "u"), (in_file, PROXY_USER)):
        assert str(source.proxy_url) == "http://proxy.example:3128/"
        credentials = source.proxy_credentials
        assert credentials is not None
        assert credentials[0] == user
        assert credentials[1].get_secret_value() == PROXY_PASSWORD
        assert PROXY_PASSWORD not in repr(source)
        assert quote(PROXY_PASSWORD, safe="") not in repr(source)


@pytest.mark.parametrize(
    ("proxy", "named"),
    [
        ({"proxy_url": "https://proxy.example:3128"}, "source.proxy_url"),
        ({"proxy_url": "socks5://proxy.example:1080"}, "source.proxy_url"),
        ({"proxy_credentials_file": "{tmp}/creds"}, "proxy_credentials_file"),
        (
            {"proxy_url": "http://proxy.example:3128", "proxy_credentials_file": "{tmp}/missing"},
            "proxy_credentials_file",
        ),
        (
            {"proxy_url": "http://proxy.example:3128", "proxy_credentials_file": "{tmp}/nocolon"},
            "proxy_credentials_file",
        ),
        (
            {
                "proxy_url": f"http://u:{quote(PROXY_PASSWORD, safe='')}@proxy.example:3128",
                "proxy_credentials_file": "{tmp}/creds",
            },
            "proxy_credentials_file",
        ),
    ],
    ids=["https-proxy", "socks", "file-without-url", "missing-file", "no-colon", "twice"],
)
def test_a_bad_proxy_setting_names_the_key_and_never_the_password(
    proxy: dict[str, str], named: str, tmp_path: Path
) -> None:
    credentials_file(tmp_path, PROXY_PASSWORD).rename(tmp_path / "creds")
    (tmp_path / "nocolon").write_text(PROXY_PASSWORD, encoding="utf-8")
    values = {key: value.format(tmp=tmp_path) for key, value in proxy.items()}
    with pytest.raises(ConfigError) as raised:
        load_settings(**source_with(**values))
    message = str(raised.value)
    assert named in message
    assert PROXY_PASSWORD not in message
    assert quote(PROXY_PASSWORD, safe="") not in message
