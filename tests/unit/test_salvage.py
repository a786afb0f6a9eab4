"""`salvage`: the tolerant second reading of a GetBill answer that orjson rejected.

What must hold: every sound piece comes back exactly as orjson reads it, every unreadable bill
as an `UnreadableBill` with its exact bytes, orjson's reason and its id when that can be read,
and a body whose structure is broken gives None, never an exception.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdr_connector.api.salvage import REASON_LIMIT, salvage
from cdr_connector.bill import ID_MAX, UnreadableBill, usable_id
from tests.vendor_doc import example_bill

# The vendor's documented example bill.
EXAMPLE_BILL: dict[str, Any] = example_bill()
BILLS_PLACEHOLDER = "BILLS-GO-HERE"

# Values orjson rejects, each standing for one way a bill arrives unreadable.
DEFECTS: dict[str, bytes] = {
    "lone low surrogate escape": b'"\\udc80"',
    "lone high surrogate escape": b'"ab\\ud800cd"',
    "raw invalid UTF-8 byte": b'"caf\xff"',
    "UTF-8-encoded surrogate": b'"\xed\xa0\x80"',
    "NaN": b"NaN",
    "Infinity": b"Infinity",
    "-Infinity": b"-Infinity",
    "number infinite as a double": b"1e400",
    "negative infinite number": b"-1e400",
    "nesting deeper than orjson's limit": b"[" * 1025 + b"]" * 1025,
    "nesting 100,000 deep": b"[{" * 50_000 + b"}]" * 50_000,
    "control character in a string": b'"a\x01b"',
}


def envelope(bills: bytes = b"[]", **result: Any) -> bytes:
    """A GetBill answer as the vendor documents it, with `bills` spliced in as raw bytes."""
    fields = {"totalitems": 8151, "currentpage": 1, "itemsperpage": 10, **result}
    document = {
        "ret": 200,
        "data": {
            "status": 0,
            "desc": "get success",
            "result": {**fields, "bills": BILLS_PLACEHOLDER},
            "reqtime": 1581502410,
            "rsptime": 1581502410,
        },
        "msg": "",
    }
    return orjson.dumps(document).replace(b'"' + BILLS_PLACEHOLDER.encode() + b'"', bills)


def array(*elements: bytes, gap: bytes = b"") -> bytes:
    return b"[" + gap + (gap + b"," + gap).join(elements) + gap + b"]"


def good(bill_id: int) -> bytes:
    return orjson.dumps({**EXAMPLE_BILL, "id": bill_id})


def bad(bill_id: int, defect: bytes) -> bytes:
    """A bill whose `userid` is the defect, after its id."""
    return good(bill_id).replace(b'"userid":"0"', b'"userid":' + defect)


def reason_of(raw: bytes) -> str:
    with pytest.raises(orjson.JSONDecodeError) as caught:
        orjson.loads(raw)
    return str(caught.value)[:REASON_LIMIT]


def unreadable(raw: bytes, bill_id: int | None) -> UnreadableBill:
    return UnreadableBill(raw=raw, reason=reason_of(raw), id=bill_id)


def salvaged(body: bytes) -> dict[str, Any]:
    document = salvage(body)
    assert isinstance(document, dict)
    return document


def bills_of(document: Any) -> list[Any]:
    bills = document["data"]["result"]["bills"]
    assert isinstance(bills, list)
    return bills


def without_bills(document: Any) -> Any:
    result = {k: v for k, v in document["data"]["result"].items() if k != "bills"}
    return {**document, "data": {**document["data"], "result": result}}


# --- one defect at a time ---------------------------------------------------------------


@pytest.mark.parametrize("defect", DEFECTS.values(), ids=DEFECTS.keys())
def test_a_bad_bill_alone_becomes_an_unreadable_bill(defect: bytes) -> None:
    raw = bad(22670, defect)
    document = salvage(envelope(array(raw)))
    assert bills_of(document) == [unreadable(raw, 22670)]
    assert without_bills(document) == without_bills(orjson.loads(envelope()))


@pytest.mark.parametrize("defect", DEFECTS.values(), ids=DEFECTS.keys())
def test_the_good_bills_around_a_bad_one_come_back_as_orjson_reads_them(defect: bytes) -> None:
    elements = [good(1), good(2), bad(3, defect), good(4)]
    document = salvage(envelope(array(*elements, gap=b"\n  ")))
    expected = [orjson.loads(good(1)), orjson.loads(good(2)), unreadable(elements[2], 3)]
    assert bills_of(document) == [*expected, orjson.loads(good(4))]


def test_every_defect_on_one_page_with_good_bills_between() -> None:
    page = [(good(1), orjson.loads(good(1)))]
    for number, defect in enumerate(DEFECTS.values(), start=1):
        raw = bad(number * 10, defect)
        page += [(raw, unreadable(raw, number * 10)), (good(number * 10 + 1), None)]
    body = envelope(array(*(raw for raw, _ in page), gap=b" "))
    expected = [orjson.loads(raw) if bill is None else bill for raw, bill in page]
    assert bills_of(salvage(body)) == expected


def test_the_raw_bytes_leave_out_the_whitespace_around_the_element() -> None:
    raw = bad(5, b"NaN")
    body = envelope(b"[ \n\t\r" + raw + b" \r\n\t, " + good(6) + b"\n]")
    assert bills_of(salvage(body)) == [unreadable(raw, 5), orjson.loads(good(6))]


def test_a_pretty_printed_page_is_salvaged_like_a_compact_one() -> None:
    raw = bad(9, b"Infinity")
    document = {"ret": 200, "data": {"status": 0, "result": {"bills": [BILLS_PLACEHOLDER]}}}
    pretty = orjson.dumps(document, option=orjson.OPT_INDENT_2)
    body = pretty.replace(b'"' + BILLS_PLACEHOLDER.encode() + b'"', raw)
    assert salvage(body) == {
        "ret": 200,
        "data": {"status": 0, "result": {"bills": [unreadable(raw, 9)]}},
    }


@pytest.mark.parametrize(
    ("defect", "reason"),
    [
        (b'"\\udc80"', "invalid high surrogate in string: line 1 column "),
        (b'"\xff"', "str is not valid UTF-8: surrogates not allowed: line 1 column 1 (char 0)"),
        (b"NaN", "unexpected character, expected a JSON value: line 1 column "),
        (b"1e400", "number is infinity when parsed as double: line 1 column "),
        (b"[" * 1025 + b"]" * 1025, "depth limit exceeded: line 1 column "),
    ],
)
def test_the_reason_is_orjson_s_message_about_the_bill_alone(defect: bytes, reason: str) -> None:
    raw = bad(1, defect)
    body = envelope(array(good(2), raw)).replace(b'"msg":""', b'"msg":NaN')
    bill = bills_of(salvage(body))[1]
    assert bill.reason.startswith(reason)
    # The position orjson names is within the bill, not the page.
    assert int(bill.reason.rsplit("(char ", 1)[1].rstrip(")")) < len(raw)


# --- ids of unreadable bills ------------------------------------------------------------


@pytest.mark.parametrize(
    ("id_value", "expected"),
    [
        (b"7", 7),
        (b'"42"', 42),
        (str(ID_MAX).encode(), ID_MAX),
        (b'"-5"', None),
        (b"-5", None),
        (b"0", None),
        (b'"12345678901234567890"', None),
        (str(ID_MAX + 1).encode(), None),
        ('"٣"'.encode(), None),
        (b'"\\u0663"', None),
        (b"12.5", None),
        (b"7.0", None),
        (b"null", None),
        (b"[7]", None),
        (b'""', None),
        (b"NaN", None),
        (b'"\\udc80"', None),
        (b'"7\xff"', None),
    ],
)
def test_the_id_of_an_unreadable_bill_is_its_usable_id(
    id_value: bytes, expected: int | None
) -> None:
    raw = b'{"duration":NaN,"id":' + id_value + b',"userid":"0"}'
    assert bills_of(salvage(envelope(array(raw)))) == [unreadable(raw, expected)]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(b'{"userid":NaN}', None, id="no id member"),
        pytest.param(b'{"id":1,"x":NaN,"id":2}', 2, id="duplicate id: the last wins"),
        pytest.param(b'{"id":1,"id":NaN}', None, id="the last id cannot be read"),
        pytest.param(b'{"\\u0069d":8,"x":NaN}', 8, id="an escaped key is still id"),
        pytest.param(b'{ "id" :\n 9 , "x" : NaN }', 9, id="whitespace around the id"),
        pytest.param(b'{"x":[1,{"id":3}],"y":NaN,"id":4}', 4, id="nested ids are not the id"),
        pytest.param(b'{"x":[{"id":3}],"y":NaN}', None, id="only a nested id"),
        pytest.param(b'{"\\udc80":1,"id":5,"x":NaN}', None, id="a key that cannot be read"),
        pytest.param(b'{"id":5 "x":NaN}', None, id="members that cannot be split"),
        pytest.param(b'{"id":5,"x":NaN,}', None, id="a trailing comma"),
        pytest.param(b"NaN", None, id="not an object: a token"),
        pytest.param(b'"\\udc80"', None, id="not an object: a string"),
        pytest.param(b'[{"id":5},NaN]', None, id="not an object: an array"),
    ],
)
def test_the_id_is_read_from_the_bill_s_own_members_alone(raw: bytes, expected: int | None) -> None:
    assert bills_of(salvage(envelope(array(good(1), raw)))) == [
        orjson.loads(good(1)),
        unreadable(raw, expected),
    ]


def test_a_usable_id_as_a_digit_string_is_read() -> None:
    raw = bad(1, b"NaN").replace(b'"id":1', b'"id":"0000000000000000123"')
    assert bills_of(salvage(envelope(array(raw)))) == [unreadable(raw, 123)]


# --- members outside the bills ----------------------------------------------------------


def test_an_unreadable_member_outside_the_bills_is_left_out() -> None:
    body = (
        envelope(array(good(1), bad(2, b"NaN")))
        .replace(b'"msg":""', b'"msg":"\\udc80"')
        .replace(b'"desc":"get success"', b'"desc":"\xff\xfe"')
        .replace(b'"totalitems":8151', b'"totalitems":1e999')
    )
    document = salvaged(body)
    assert set(document) == {"ret", "data"}
    assert set(document["data"]) == {"status", "result", "reqtime", "rsptime"}
    assert set(document["data"]["result"]) == {"currentpage", "itemsperpage", "bills"}
    assert bills_of(document) == [orjson.loads(good(1)), unreadable(bad(2, b"NaN"), 2)]


def test_deep_nesting_outside_the_bills_is_left_out() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    body = envelope(array(good(1))).replace(b'"msg":""', b'"msg":' + deep)
    assert salvage(body) == {
        k: v for k, v in orjson.loads(envelope(array(good(1)))).items() if k != "msg"
    }


def test_a_duplicate_key_takes_the_last_value_unless_that_cannot_be_read() -> None:
    body = envelope(array(bad(1, b"NaN")))
    assert salvaged(body.replace(b'"msg":""', b'"msg":"a","msg":"b"'))["msg"] == "b"
    assert salvaged(body.replace(b'"msg":""', b'"msg":"a","msg":NaN'))["msg"] == "a"
    twice = body.replace(b'{"ret":200', b'{"data":null,"ret":200')
    assert bills_of(salvage(twice)) == [unreadable(bad(1, b"NaN"), 1)]


@pytest.mark.parametrize(
    ("replace", "by", "path", "expected"),
    [
        pytest.param(b'"data":{', b'"data":null,"x":{', ("data",), None, id="data null"),
        pytest.param(
            b'"result":{', b'"result":[1,2],"x":{', ("data", "result"), [1, 2], id="result a list"
        ),
        pytest.param(b'"bills":[]', b'"bills":{"a":1}', ("data", "result", "bills"), {"a": 1}),
        pytest.param(b'"bills":[]', b'"bills":"[]"', ("data", "result", "bills"), "[]"),
    ],
)
def test_path_members_of_another_shape_are_read_whole(
    replace: bytes, by: bytes, path: tuple[str, ...], expected: Any
) -> None:
    body = envelope().replace(b'"msg":""', b'"msg":NaN').replace(replace, by)
    value: Any = salvaged(body)
    for key in path:
        value = value[key]
    assert value == expected


def test_bills_of_another_shape_that_cannot_be_read_are_left_out() -> None:
    body = envelope(b'{"a":NaN}')
    assert "bills" not in salvaged(body)["data"]["result"]


def test_an_empty_page_and_a_sound_body_read_as_orjson_reads_them() -> None:
    for body in (envelope(), envelope(b"[ \n ]"), envelope(array(good(1), good(2), gap=b" "))):
        assert salvage(body) == orjson.loads(body)
    assert salvage(b"{}") == {}
    assert salvage(b' \n{ "a" : [ 1 , {"b":[]} ] , "c":"d\\"}" }\r\n') == {
        "a": [1, {"b": []}],
        "c": 'd"}',
    }


# --- bodies whose structure cannot be read ----------------------------------------------

PAGE_WITH_A_BAD_BILL = envelope(array(good(1), bad(2, b'"\\udc80"'), good(3)))


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b" \n ", id="whitespace"),
        pytest.param(b"[1, NaN]", id="an array at the top"),
        pytest.param(b'"\\udc80"', id="a string at the top"),
        pytest.param(b"NaN", id="a token at the top"),
        pytest.param(b"\xef\xbb\xbf" + PAGE_WITH_A_BAD_BILL, id="a byte order mark"),
        pytest.param(
            b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
            b"<body><h1>502 Bad Gateway</h1><hr><center>nginx</center></body></html>",
            id="an HTML error page",
        ),
        pytest.param(
            b'<br />\n<b>Warning</b>:  Undefined array key "x" in <b>/var/www/api.php</b> on '
            b"line <b>12</b><br />\n" + PAGE_WITH_A_BAD_BILL,
            id="a PHP warning before the JSON",
        ),
        pytest.param(PAGE_WITH_A_BAD_BILL + b"<br />", id="trailing markup"),
        pytest.param(PAGE_WITH_A_BAD_BILL + b"{}", id="a second document"),
        pytest.param(PAGE_WITH_A_BAD_BILL + b"\x00", id="a trailing NUL"),
        pytest.param(PAGE_WITH_A_BAD_BILL + b"}", id="an extra closing brace"),
        pytest.param(PAGE_WITH_A_BAD_BILL[:-1], id="cut short by one byte"),
        pytest.param(b'{"msg":"never ends}', id="an unterminated string"),
        pytest.param(b'{"msg":"ends with an escaped quote\\"}', id="an escaped closing quote"),
        pytest.param(b'{"a":[1},"b":2}', id="brackets of different kinds"),
        pytest.param(b'{"a":[[1]}', id="a bracket left open"),
        pytest.param(b'{"a":1]}', id="a stray closing bracket"),
        pytest.param(b'{"a":1 "b":2}', id="a missing comma"),
        pytest.param(b'{"a":1,,"b":2}', id="two commas"),
        pytest.param(b'{"a":1, garbage, "b":2}', id="garbage between members"),
        pytest.param(b'{"a":1 garbage}', id="garbage after a value"),
        pytest.param(b'{"a":"x" "y"}', id="two strings for one value"),
        pytest.param(b'{"a":[1] [2]}', id="two arrays for one value"),
        pytest.param(b'{"a" 1}', id="a missing colon"),
        pytest.param(b'{"a":}', id="a missing value"),
        pytest.param(b'{"a":1,}', id="a trailing comma"),
        pytest.param(b"{a:1}", id="an unquoted key"),
        pytest.param(b"{'a':1}", id="a single-quoted key"),
        pytest.param(b'{"\\udc80":1}', id="a key that orjson cannot read"),
        pytest.param(b'{"\xff":1}', id="a key that is not UTF-8"),
        pytest.param(b'{"a\\":1}', id="a key that swallows its colon"),
        pytest.param(envelope(array(good(1), b"", good(2))), id="an empty bill"),
        pytest.param(envelope(b"[" + good(1) + b" " + good(2) + b"]"), id="bills without a comma"),
        pytest.param(envelope(array(good(1), b'{"id":2,"x":[1}]')), id="a bill's brackets"),
        pytest.param(envelope(array(good(1), b'{"id":2,"x":"open}')), id="a bill's open string"),
        pytest.param(envelope(b"[" + good(1) + b",]"), id="a trailing comma in the bills"),
        pytest.param(
            envelope(array(bad(1, b"NaN"))).replace(b'"desc":', b'"desc" '),
            id="a broken data object",
        ),
        pytest.param(b"{" + b'"a":' + b"[" * 100_000 + b"]" * 99_999 + b"}", id="deep, unbalanced"),
    ],
)
def test_a_body_whose_structure_cannot_be_read_gives_none(body: bytes) -> None:
    assert salvage(body) is None


def test_every_truncation_of_a_page_with_a_bad_bill_gives_none() -> None:
    body = envelope(array(good(1), bad(2, b"NaN"), b'"\\udc80"', b"[" * 1100 + b"]" * 1100))
    assert bills_of(salvage(body))[0] == orjson.loads(good(1))
    for length in range(len(body)):
        assert salvage(body[:length]) is None


# --- properties -------------------------------------------------------------------------

PROPERTY = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow],
)
WHITESPACE = st.sampled_from([b"", b" ", b"\n", b"\r\n  ", b"\t"])

sound_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=8)
# Lone surrogates included, so that not every generated document is sound.
any_text = st.text(max_size=8) | st.text(
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=2
)


def json_values(text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | text
    )
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4)
        ),
        max_leaves=10,
    )


def bills(text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    ids = st.integers(-5, 2**64) | st.integers(0, 2**64).map(str) | json_values(text)
    fields = st.dictionaries(st.sampled_from(sorted(EXAMPLE_BILL)), json_values(text), max_size=5)
    shaped = st.builds(lambda bill_id, rest: {"id": bill_id, **rest}, ids, fields)
    return shaped | json_values(text)


def documents(text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    """Envelopes with arbitrary bills, of the documented shape or not quite."""
    values = json_values(text)
    extra = st.dictionaries(text, values, max_size=2)
    bill_lists = st.lists(bills(text), max_size=5)
    result = st.builds(lambda b, e: {"totalitems": 1, "bills": b, **e}, bill_lists | values, extra)
    data = st.builds(lambda r, e: {"status": 0, "result": r, **e}, result | values, extra)
    envelopes = st.builds(lambda d, e: {"ret": 200, "data": d, **e}, data | values, extra)
    return envelopes | st.dictionaries(text, values, max_size=4)


def encoded(value: Any, ascii_only: bool, indent: int | None) -> bytes:
    """JSON as other servers write it: escaped or raw UTF-8 (lone surrogates kept as such)."""
    text = json.dumps(value, ensure_ascii=ascii_only, indent=indent)
    return text.encode("utf-8", "surrogatepass")


@PROPERTY
@given(documents(any_text), st.booleans(), st.sampled_from([None, 0, 2]))
def test_a_body_orjson_reads_is_salvaged_exactly_as_orjson_reads_it(
    document: Any, ascii_only: bool, indent: int | None
) -> None:
    body = encoded(document, ascii_only, indent)
    try:
        expected = orjson.loads(body)
    except orjson.JSONDecodeError:
        result = salvage(body)  # None only for a key orjson cannot read
        assert result is None or isinstance(result, dict)
    else:
        assert salvage(body) == expected


defects = st.one_of(
    st.integers(0xD800, 0xDFFF).map(lambda unit: b'"\\u%04x"' % unit),
    st.sampled_from(
        [b"\x80", b"\xbf", b"\xc0\xaf", b"\xc3", b"\xed\xa0\x80", b"\xf5", b"\xff"]
    ).map(lambda byte: b'"' + byte + b'"'),
    st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"nan", b"+1", b"01", b"tru", b"0x1F"]),
    st.builds(
        lambda sign, exponent: b"%s1e%d" % (sign, exponent),
        st.sampled_from([b"", b"-"]),
        st.integers(309, 100_000),
    ),
    st.integers(1025, 3000).map(lambda depth: b"[" * depth + b"]" * depth),
)
id_values = st.one_of(
    st.integers(-(2**64), 2**64).map(lambda n: str(n).encode()),
    st.integers(0, 10**21).map(lambda n: b'"%d"' % n),
    st.sampled_from([b'"-5"', '"٣"'.encode(), b"12.5", b"null", b"[1]", b'"\\udc80"', b"NaN"]),
)


def dumps(value: Any) -> bytes:
    """Compact JSON of any size of integer (orjson stops at 64 bits)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


@st.composite
def bad_bills(draw: st.DrawFn) -> tuple[bytes, int | None]:
    """An element orjson rejects, and the id it should be known by."""
    defect = draw(defects)
    shape = draw(st.sampled_from(["object", "bare", "array"]))
    if shape == "bare":
        return defect, None
    if shape == "array":
        return b"[1," + defect + b"]", None
    fields = draw(st.dictionaries(st.sampled_from(sorted(EXAMPLE_BILL)), json_values(sound_text)))
    members = [dumps(key) + b":" + dumps(value) for key, value in fields.items()]
    members = [member for member in members if not member.startswith(b'"id"')]
    members.insert(draw(st.integers(0, len(members))), b'"x":' + defect)
    bill_id = draw(st.none() | id_values)
    if bill_id is not None:
        members.insert(draw(st.integers(0, len(members))), b'"id":' + bill_id)
    gap = draw(WHITESPACE)
    raw = b"{" + gap + (b"," + gap).join(members) + gap + b"}"
    if bill_id is None:
        return raw, None
    try:
        return raw, usable_id(orjson.loads(bill_id))
    except orjson.JSONDecodeError:
        return raw, None


elements = st.one_of(
    bills(sound_text).map(lambda bill: ("good", dumps(bill), None)),
    bad_bills().map(lambda bill: ("bad", bill[0], bill[1])),
)


@PROPERTY
@given(st.lists(elements, min_size=1, max_size=8), WHITESPACE, WHITESPACE)
def test_spliced_in_bad_bills_are_unreadable_and_the_good_ones_survive(
    page: list[tuple[str, bytes, int | None]], before: bytes, after: bytes
) -> None:
    body = envelope(b"[" + b",".join(before + raw + after for _, raw, _ in page) + b"]")
    expected = [
        orjson.loads(raw) if kind == "good" else unreadable(raw, bill_id)
        for kind, raw, bill_id in page
    ]
    assert bills_of(salvage(body)) == expected


@PROPERTY
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(body: bytes) -> None:
    for candidate in (body, b"{" + body, envelope(b"[" + body)):
        assert salvage(candidate) is None or isinstance(salvage(candidate), dict)


mutations = st.lists(
    st.tuples(
        st.sampled_from(["flip", "delete", "insert", "truncate"]),
        st.integers(0, 10_000),
        st.binary(min_size=1, max_size=4),
    ),
    min_size=1,
    max_size=4,
)


def mutated(body: bytes, changes: list[tuple[str, int, bytes]]) -> bytes:
    for kind, where, data in changes:
        at = where % (len(body) + 1)
        if kind == "flip":
            body = body[:at] + data[:1] + body[at + 1 :]
        elif kind == "delete":
            body = body[:at] + body[at + len(data) :]
        elif kind == "insert":
            body = body[:at] + data + body[at:]
        else:
            body = body[:at]
    return body


@PROPERTY
@given(mutations)
def test_mutations_of_a_page_never_raise(changes: list[tuple[str, int, bytes]]) -> None:
    body = mutated(PAGE_WITH_A_BAD_BILL, changes)
    result = salvage(body)
    assert result is None or isinstance(result, dict)
    try:
        expected = orjson.loads(body)
    except orjson.JSONDecodeError:
        return
    assert result == expected
