"""Malformed requests get ret 400 naming the parameter; none of them reaches the catch-all
(the `start` fixture checks `unexpected_errors` after every test)."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import pytest

from cdr_connector.simulator import services
from tests.simulator.conftest import GET_BILL, GET_RECORD_FILE, Client, StartSimulator

BAD_GETBILL: list[tuple[dict[str, Any], str]] = [
    ({"starttime": None}, "starttime"),
    ({"starttime": ""}, "starttime"),
    ({"starttime": "2024-01-01"}, "starttime"),
    ({"starttime": "2024-1-01 00:00:00"}, "starttime"),
    ({"starttime": "2024-02-30 00:00:00"}, "starttime"),
    ({"starttime": "2024-01-01 24:00:00"}, "starttime"),
    ({"starttime": "2024-01-01T00:00:00"}, "starttime"),
    ({"starttime": " 2024-01-01 00:00:00"}, "starttime"),
    ({"starttime": "\uff12\uff10\uff12\uff14-01-01 00:00:00"}, "starttime"),  # full-width digits
    ({"starttime": "yesterday"}, "starttime"),
    ({"endtime": None}, "endtime"),
    ({"endtime": "2024-13-01 00:00:00"}, "endtime"),
    ({"starttime": "2024-01-02 00:00:00", "endtime": "2024-01-01 23:59:59"}, "endtime"),
    ({"syncflag": 0}, "syncflag"),
    ({"syncflag": 4}, "syncflag"),
    ({"syncflag": "one"}, "syncflag"),
    ({"syncflag": ""}, "syncflag"),
    ({"direction": 0}, "direction"),
    ({"direction": 4}, "direction"),
    ({"callmethod": -1}, "callmethod"),
    ({"callmethod": 7}, "callmethod"),
    ({"callmethod": "abc"}, "callmethod"),
    ({"itemsperpage": 0}, "itemsperpage"),
    ({"itemsperpage": 1001}, "itemsperpage"),
    ({"itemsperpage": "ten"}, "itemsperpage"),
    ({"itemsperpage": "1e3"}, "itemsperpage"),
    ({"itemsperpage": " 10"}, "itemsperpage"),
    ({"itemsperpage": "\uff11\uff10"}, "itemsperpage"),  # full-width digits
    ({"itemsperpage": "9" * 5000}, "itemsperpage"),
    ({"currentpage": 0}, "currentpage"),
    ({"currentpage": -1}, "currentpage"),
    ({"currentpage": "1.5"}, "currentpage"),
    ({"token": None}, "token"),
    ({"token": ""}, "token"),
]


@pytest.mark.parametrize(("changes", "parameter"), BAD_GETBILL)
async def test_bad_getbill_parameter_is_400_naming_it(
    client: Client, changes: dict[str, Any], parameter: str
) -> None:
    fields = client.bill_fields(**{k: v for k, v in changes.items() if v is not None})
    for name in [k for k, v in changes.items() if v is None]:
        del fields[name]

    answer = await client.call(fields)

    assert answer["ret"] == 400, answer
    assert answer["data"]["status"] == 1
    assert parameter in answer["msg"]
    assert answer["data"]["desc"] == answer["msg"]


@pytest.mark.parametrize(
    ("fields", "parameter"),
    [
        ({"service": "App.Sip_Cdr.Nope"}, "service"),
        ({"service": ""}, "service"),
        ({}, "service"),
        ({"service": GET_RECORD_FILE}, "token"),
        ({"service": GET_RECORD_FILE, "token": "x" * 32}, "filename"),
    ],
)
async def test_bad_service_or_missing_field_is_400(
    client: Client, fields: dict[str, str], parameter: str
) -> None:
    if fields.get("token"):
        fields = {**fields, "token": client.token}
    answer = await client.call(fields)
    assert answer["ret"] == 400
    assert parameter in answer["msg"]


async def test_a_file_upload_is_not_a_parameter(client: Client) -> None:
    form = aiohttp.FormData(client.bill_fields())
    form.add_field("extnumber", b"8001", filename="ext.txt")
    async with client.session.post(client.simulator.url, data=form) as response:
        answer = await response.json()
    assert answer["ret"] == 400
    assert "extnumber" in answer["msg"]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"service": "App.Sip_Cdr.GetBill"}', "application/json"),
        (b"--x\r\ngarbage", "multipart/form-data; boundary=x"),
        (b"service=App", "multipart/form-data"),
        (b"service=\xff\xfe", "application/x-www-form-urlencoded"),
        (b"service=App.Sip_Auth.Login", "application/x-www-form-urlencoded; charset=bogus"),
    ],
)
async def test_a_body_that_is_not_a_form_is_400(
    client: Client, body: bytes, content_type: str
) -> None:
    headers = {"Content-Type": content_type}
    async with client.session.post(client.simulator.url, data=body, headers=headers) as response:
        assert response.status == 200
        answer = await response.json()
    assert answer["ret"] == 400
    assert "service" in answer["msg"] or "form" in answer["msg"]


async def test_repeated_fields_use_the_first(client: Client) -> None:
    fields = [*client.bill_fields(itemsperpage=2).items(), ("itemsperpage", "0")]
    async with client.session.post(client.simulator.url, data=fields) as response:
        answer = await response.json()
    assert answer["ret"] == 200


async def test_a_crash_becomes_ret_500_with_a_log_line(
    start: StartSimulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*_: object) -> services.Answer:
        raise RuntimeError("a bug")

    monkeypatch.setitem(services.SERVICES, GET_BILL, broken)
    api = await start()
    with caplog.at_level(logging.ERROR, logger="cdr_connector.simulator"):
        answer = await api.call({"service": GET_BILL})

    assert answer["ret"] == 500
    assert answer["data"]["status"] == 1
    assert any("a bug" in str(record.exc_info) for record in caplog.records)
    assert api.simulator.state.unexpected_errors == 1
    api.simulator.state.unexpected_errors = 0  # provoked on purpose; see the `start` fixture
