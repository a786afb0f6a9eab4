"""What the vendor's answers hold, as the client reads it over real HTTP: a page with an
unreadable bill is read bill by bill and never retried, and an answer is refused, while it is
read, once it exceeds `source.max_answer_bytes`."""

from __future__ import annotations

import logging

import orjson
import pytest
from aiohttp import web

from cdr_connector.api import GET_BILL, BillPage
from cdr_connector.bill import UnreadableBill
from cdr_connector.errors import AnswerTooLargeError, ApiResponseError, ApiTransientError
from tests.unit import test_api_client as fakes
from tests.unit.test_api_client import BILLS, Factory, FakeVendor, Reply, query, raw

# The fake vendor's fixtures, shared with the client's other tests.
vendor = fakes.vendor
make_client = fakes.make_client

BAD_BILLS = (
    b'{"id":7,"userid":"\\udc80"}',
    b'{"id":8,"destnumber":"\xff"}',
    b'{"id":9,"duration":NaN}',
    b'{"id":10,"userkey":' + b"[" * 1100 + b"]" * 1100 + b"}",
)


def page_with(*elements: bytes, total: int = 6) -> bytes:
    bills = b",".join(elements)
    return (
        b'{"ret":200,"data":{"status":0,"desc":"get success","result":{"totalitems":'
        + str(total).encode()
        + b',"currentpage":1,"itemsperpage":10,"bills":['
        + bills
        + b']}},"msg":""}'
    )


async def test_a_page_with_unreadable_bills_is_read_bill_by_bill_and_not_asked_again(
    vendor: FakeVendor, make_client: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    good = [orjson.dumps(b) for b in BILLS]
    body = page_with(good[0], *BAD_BILLS, good[1])
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(body)
    vendor.script(GET_BILL, raw(body))
    client = make_client()
    answer = await client.get_bills(query())
    assert vendor.count(GET_BILL) == 1
    assert answer.bills[0] == BILLS[0] and answer.bills[-1] == BILLS[1]
    unreadable = answer.bills[1:-1]
    assert all(isinstance(b, UnreadableBill) for b in unreadable)
    assert [b.raw for b in unreadable] == list(BAD_BILLS)
    assert [b.id for b in unreadable] == [7, 8, 9, 10]
    assert fakes.errors_total(client.source_name, "salvaged") == 1
    # An operator reading the log learns why dead letters with raw bytes appeared.
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"{GET_BILL}: the answer is not valid JSON as a whole; read bill by bill, 4 bill(s) "
        "unreadable (dead-lettered with their raw bytes)"
    ]


async def test_a_body_whose_structure_cannot_be_read_is_still_retried(
    vendor: FakeVendor, make_client: Factory
) -> None:
    body = page_with(orjson.dumps(BILLS[0]), BAD_BILLS[0])[:-30]  # cut short on the way
    vendor.script(GET_BILL, raw(body), raw(body))
    client = make_client(poll={"max_attempts": 2})
    with pytest.raises(ApiTransientError, match="after 2 attempt"):
        await client.get_bills(query())
    assert vendor.count(GET_BILL) == 2


def large(size: int, *, chunked: bool) -> Reply:
    async def reply(request: web.Request, form: dict[str, str]) -> web.StreamResponse:
        response = web.StreamResponse()
        if chunked:
            response.enable_chunked_encoding()
        else:
            response.content_length = size
        await response.prepare(request)
        sent = 0
        while sent < size:
            chunk = min(64 * 1024, size - sent)
            await response.write(b" " * chunk)
            sent += chunk
        await response.write_eof()
        return response

    return reply


@pytest.mark.parametrize("chunked", [False, True])
async def test_an_answer_over_the_size_limit_is_refused_saying_how_large_it_was(
    vendor: FakeVendor, make_client: Factory, chunked: bool
) -> None:
    size = 3 * 1024 * 1024 + 5
    vendor.script(GET_BILL, large(size, chunked=chunked))
    client = make_client(max_answer_bytes=1024 * 1024)
    with pytest.raises(AnswerTooLargeError) as caught:
        await client.get_bills(query())
    assert "source.max_answer_bytes (1048576)" in str(caught.value)
    assert str(size) in str(caught.value)
    assert vendor.count(GET_BILL) == 1, "a content fault is not retried"
    assert fakes.errors_total(client.source_name, "too_large") == 1


async def test_an_answer_at_the_size_limit_is_read(
    vendor: FakeVendor, make_client: Factory
) -> None:
    body = page_with(orjson.dumps(BILLS[0]))
    body += b" " * (64 * 1024 - len(body))
    vendor.script(GET_BILL, raw(body))
    client = make_client(max_answer_bytes=64 * 1024)
    assert (await client.get_bills(query())).bills == [BILLS[0]]


@pytest.mark.parametrize("total", ["9" * 25, "٣", "1e3", "12.5", True])
def test_an_envelope_integer_is_read_by_the_one_integer_reader(total: object) -> None:
    """`totalitems` of 25 digits was an int of any size; "٣" read as 3 by str.isdigit."""
    with pytest.raises(ApiResponseError, match="totalitems must be a non-negative integer"):
        BillPage.from_result({"totalitems": total, "bills": []}, query())


def test_an_envelope_integer_may_be_padded_text() -> None:
    assert BillPage.from_result({"totalitems": " 7 ", "bills": []}, query()).totalitems == 7
