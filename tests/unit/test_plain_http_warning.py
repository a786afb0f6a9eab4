"""A plain http:// vendor URL is warned about once at start-up: the access key and the tokens
travel in clear text. Not for https://, and not for a loopback address reached directly
(nothing crosses a network then)."""

from __future__ import annotations

import logging

import pytest

from cdr_connector.api import VendorApiClient
from cdr_connector.config import PollSettings
from tests.fakes import FakeClock
from tests.unit.forward_proxy import forward_proxy
from tests.unit.test_api_client import BILLS, FakeVendor, make_source, query, serving

PASSWORD = "in-the-url-s3cret"


def clear_text_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING and "clear text" in record.getMessage()
    ]


@pytest.mark.parametrize(
    "url",
    ["http://vendor.example/api/", f"http://user:{PASSWORD}@10.1.2.3:8080/api/"],
    ids=["host", "address-with-userinfo"],
)
def test_a_plain_http_url_is_warned_about_naming_the_risk(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    VendorApiClient(make_source(url), PollSettings())
    [warning] = clear_text_warnings(caplog)
    assert "access key" in warning
    assert "https://" in warning
    assert url.replace(f"user:{PASSWORD}@", "") in warning
    assert PASSWORD not in caplog.text


@pytest.mark.parametrize(
    "url",
    ["https://vendor.example/api/", "http://127.0.0.1:8080/", "http://localhost:8080/"],
    ids=["https", "loopback", "localhost"],
)
def test_https_and_loopback_urls_are_not_warned_about(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    VendorApiClient(make_source(url), PollSettings())
    assert clear_text_warnings(caplog) == []


async def test_the_warning_comes_once_however_many_requests_follow(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    # Through a proxy even a loopback address crosses a network hop.
    async with serving(FakeVendor()) as vendor, forward_proxy() as proxy:
        client = VendorApiClient(
            make_source(vendor.url, proxy_url=proxy.url), PollSettings(), clock=FakeClock()
        )
        try:
            for _ in range(3):
                assert (await client.get_bills(query())).bills == BILLS
            await client.close()  # a new session after this one
            assert (await client.get_bills(query())).bills == BILLS
        finally:
            await client.close()
    assert len(clear_text_warnings(caplog)) == 1
