"""Login, tokens, the envelope, and the request the vendor's own documentation shows."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
import pytest

from cdr_connector.simulator import ManualClock
from tests.simulator.conftest import (
    ACCESSKEY,
    APPID,
    GET_BILL,
    LOGIN,
    T0,
    Client,
    StartSimulator,
    advance,
)
from tests.vendor_doc import example_answer

DOC_ANSWER = example_answer()
DOC_BILL = DOC_ANSWER["data"]["result"]["bills"][0]
# The PHP example's fields (getbill.md), the token aside.
PHP_EXAMPLE = {
    "service": GET_BILL,
    "starttime": "2019-01-12 00:00:00",
    "endtime": "2020-12-12 00:00:00",
    "direction": "3",
    "syncflag": "3",
    "callmethod": "0",
    "currentpage": "1",
    "itemsperpage": "10",
}


def assert_same_shape(actual: Any, expected: Any, where: str = "answer") -> None:
    """Same keys (recursively) and same JSON types as the documentation's example."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), where
        assert list(actual) == list(expected), where
        for key, value in expected.items():
            assert_same_shape(actual[key], value, f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), where
        for index, item in enumerate(actual):
            assert_same_shape(item, expected[0], f"{where}[{index}]")
    else:
        assert type(actual) is type(expected), f"{where}: {actual!r}"


def without_id(bill: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {key: value for key, value in bill.items() if key != "id"} | changes


async def test_login_answers_token_in_documented_envelope(start: StartSimulator) -> None:
    api = await start(clock=ManualClock(T0))
    answer = await api.call({"service": LOGIN, "appid": APPID, "accesskey": ACCESSKEY})

    assert list(answer) == ["ret", "data", "msg"]
    assert answer["ret"] == 200
    assert answer["msg"] == ""
    data = answer["data"]
    assert list(data) == ["status", "desc", "result", "reqtime", "rsptime"]
    assert data["status"] == 0
    assert data["reqtime"] == data["rsptime"] == int(T0)
    result = data["result"]
    assert list(result) == ["companycode", "companyname", "token", "authtime", "authmodel"]
    assert result["companycode"] == "1"
    assert re.fullmatch(r"[0-9a-f]{32}", result["token"])
    assert result["authtime"] == "2024-03-01 12:00:00"  # T0 in Asia/Shanghai
    assert result["authmodel"] == ""


@pytest.mark.parametrize(
    ("appid", "accesskey"),
    [("someone-else", ACCESSKEY), (APPID, "wrong"), (APPID.upper(), ACCESSKEY)],
)
async def test_login_with_wrong_credentials_is_601(
    start: StartSimulator, appid: str, accesskey: str
) -> None:
    api = await start()
    answer = await api.call({"service": LOGIN, "appid": appid, "accesskey": accesskey})
    assert answer["ret"] == 601
    assert answer["data"]["status"] == 1
    assert answer["data"]["result"] is None


@pytest.mark.parametrize("missing", ["appid", "accesskey"])
async def test_login_without_a_credential_is_400_naming_it(
    start: StartSimulator, missing: str
) -> None:
    api = await start()
    fields = {"service": LOGIN, "appid": APPID, "accesskey": ACCESSKEY}
    del fields[missing]
    answer = await api.call(fields)
    assert answer["ret"] == 400
    assert missing in answer["msg"]


async def test_token_expires_after_its_lifetime(start: StartSimulator) -> None:
    clock = ManualClock(T0)
    api = await start(clock=clock, token_ttl=60.0)
    await api.login()
    await advance(clock, 59)
    assert (await api.call(api.bill_fields()))["ret"] == 200

    await advance(clock, 1)
    expired = await api.call(api.bill_fields())
    assert expired["ret"] == 600
    assert expired["data"]["status"] == 1

    await api.login()
    assert (await api.call(api.bill_fields()))["ret"] == 200


async def test_token_expires_in_real_time_too(start: StartSimulator) -> None:
    api = await start(token_ttl=0.3)
    await api.login()
    assert (await api.call(api.bill_fields()))["ret"] == 200
    await asyncio.sleep(0.35)
    assert (await api.call(api.bill_fields()))["ret"] == 600


async def test_unknown_token_is_600(client: Client) -> None:
    answer = await client.call(client.bill_fields(token="0" * 32))
    assert answer["ret"] == 600


async def test_revoked_tokens_are_600_until_the_next_login(start: StartSimulator) -> None:
    api = await start()
    first, second = await api.login(), await api.login()
    assert (await api.admin("POST", "revoke-tokens")) == {"revoked": 2}

    for token in (first, second):
        assert (await api.call(api.bill_fields(token=token)))["ret"] == 600
    await api.login()
    assert (await api.call(api.bill_fields()))["ret"] == 200


async def test_multipart_and_urlencoded_forms_get_the_same_answer(start: StartSimulator) -> None:
    api = await start(backlog=50)
    await api.login()
    fields = api.bill_fields(itemsperpage=5)

    # What PHP's curl sends for an array of fields.
    multipart = aiohttp.FormData(fields, default_to_multipart=True)
    async with api.session.post(api.simulator.url, data=multipart) as response:
        assert response.content_type == "application/json"
        assert response.request_info.headers["Content-Type"].startswith("multipart/form-data")
        from_multipart = await response.json()
    async with api.session.post(api.simulator.url, data=fields) as response:
        assert response.request_info.headers["Content-Type"].startswith(
            "application/x-www-form-urlencoded"
        )
        from_urlencoded = await response.json()

    assert from_multipart["ret"] == from_urlencoded["ret"] == 200
    assert from_multipart["data"]["result"] == from_urlencoded["data"]["result"]
    assert len(from_multipart["data"]["result"]["bills"]) == 5


async def test_any_path_is_the_api(start: StartSimulator) -> None:
    api = await start()
    fields = {"service": LOGIN, "appid": APPID, "accesskey": ACCESSKEY}
    async with api.session.post(f"{api.simulator.url}index.php", data=fields) as response:
        assert (await response.json())["ret"] == 200


async def test_the_documented_php_request_gets_the_documented_answer(client: Client) -> None:
    inside = [
        without_id(DOC_BILL),
        without_id(DOC_BILL, starttime="2019-01-12 00:00:00", endtime="2019-01-12 00:01:00"),
        without_id(DOC_BILL, starttime="2020-12-12 00:00:00", endtime="2020-12-12 00:00:09"),
    ]
    outside = [
        without_id(DOC_BILL, starttime="2019-01-11 23:59:59"),
        without_id(DOC_BILL, starttime="2020-12-12 00:00:01"),
    ]
    ids = (await client.admin("POST", "inject", inside + outside))["ids"]

    answer = await client.call({**PHP_EXAMPLE, "token": client.token})

    assert_same_shape(answer, DOC_ANSWER)
    result = answer["data"]["result"]
    assert result["totalitems"] == 3
    assert (result["currentpage"], result["itemsperpage"]) == (1, 10)
    assert result["bills"] == [
        {"id": id_, **bill} for id_, bill in zip(ids[:3], inside, strict=True)
    ]


async def test_generated_bills_have_the_documented_fields_and_types(start: StartSimulator) -> None:
    api = await start(backlog=3000)
    await api.login()
    bills = (await api.get_bill(itemsperpage=1000))["bills"]
    assert len(bills) == 1000
    answered = [bill for bill in bills if bill["answertime"] is not None]
    unanswered = [bill for bill in bills if bill["answertime"] is None]
    assert answered
    assert unanswered
    for bill in unanswered:
        assert_same_shape(bill, DOC_BILL, f"bill {bill['id']}")
    for bill in answered:
        assert_same_shape(bill, {**DOC_BILL, "answertime": ""}, f"bill {bill['id']}")
