"""A bill as the vendor gives it -> a normalised record: types, time zones, errors."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cdr_connector import bill as bill_rules
from cdr_connector.errors import RecordError
from cdr_connector.records import RecordContext, normalise, record_key
from tests.vendor_doc import EXAMPLE_RESPONSE

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")
FETCHED_AT_MS = 1_900_000_000_000  # 2030-03-17: after every call the tests read
REQUIRED = (
    "id", "starttime", "endtime", "duration", "billsec", "direction", "callmethod",
    "hangupcause", "hangupdirection", "destnumber", "displaynumber",
)  # fmt: skip
MAY_BE_EMPTY = (
    "extnumber", "recordfilename", "downloadip", "userid", "memberid", "chengshudu",
    "customuuid", "userkey",
)  # fmt: skip


def example_bill() -> dict[str, Any]:
    bill: dict[str, Any] = json.loads(EXAMPLE_RESPONSE)["data"]["result"]["bills"][0]
    return bill


def context(zone: ZoneInfo = SHANGHAI, mode: str = "live") -> RecordContext:
    return RecordContext(source="acme", zone=zone, fetched_at_ms=FETCHED_AT_MS, fetch_mode=mode)


def utc_ms(*fields: int) -> int:
    return int(dt.datetime(*fields, tzinfo=dt.UTC).timestamp() * 1000)


def answered(**changes: Any) -> dict[str, Any]:
    """The example bill as an answered, recorded call."""
    bill = example_bill()
    bill.update(
        answertime="2019-09-27 14:58:45",
        billsec=20,
        extnumber="8001",
        recordfilename="20190927/8001-22670.wav",
        downloadip="10.1.2.3",
    )
    bill.update(changes)
    return bill


def rejected(bill: Any, zone: ZoneInfo = SHANGHAI) -> RecordError:
    with pytest.raises(RecordError) as caught:
        normalise(bill, context(zone))
    assert caught.value.stage == "normalise"
    return caught.value


# --- the documented example -------------------------------------------------------------------


def test_the_documented_example_normalises_field_by_field() -> None:
    record = normalise(example_bill(), context(mode="sweep"))

    assert record == {
        "id": 22670,
        "extnumber": "",
        "destnumber": "13387525701",
        "displaynumber": "2190170001",
        "starttime": utc_ms(2019, 9, 27, 6, 58, 37),
        "answertime": None,
        "endtime": utc_ms(2019, 9, 27, 6, 59, 5),
        "duration": 28,
        "billsec": 0,
        "direction": "callout",
        "callmethod": 6,
        "userid": "0",
        "memberid": "0",
        "chengshudu": "0",
        "customuuid": "0",
        "recordfilename": "",
        "downloadip": "",
        "hangupdirection": 10041,
        "hangupcause": 10020,
        "userkey": "#",
        "extra_fields": {},
        "source": "acme",
        "fetched_at": FETCHED_AT_MS,
        "pbx_timezone": "Asia/Shanghai",
        "fetch_mode": "sweep",
    }


def test_shanghai_local_time_becomes_utc() -> None:
    record = normalise(example_bill(), context())

    start = dt.datetime.fromtimestamp(record["starttime"] / 1000, dt.UTC)
    assert start.isoformat() == "2019-09-27T06:58:37+00:00"


def test_an_answered_call_keeps_its_answer_time() -> None:
    record = normalise(answered(), context())

    assert record["answertime"] == utc_ms(2019, 9, 27, 6, 58, 45)
    assert record["billsec"] == 20


def test_the_input_bill_is_not_changed() -> None:
    bill = answered(surprise=[1])
    before = json.dumps(bill, sort_keys=True)

    normalise(bill, context())

    assert json.dumps(bill, sort_keys=True) == before


def test_any_mapping_is_accepted() -> None:
    assert normalise(MappingProxyType(example_bill()), context())["id"] == 22670


# --- loose types ------------------------------------------------------------------------------


def test_numbers_given_as_strings_become_numbers() -> None:
    bill = answered(
        id="22670", duration="28", billsec="20", callmethod="6", hangupcause="10001",
        hangupdirection="10040",
    )  # fmt: skip

    record = normalise(bill, context())

    assert (record["id"], record["duration"], record["billsec"], record["callmethod"]) == (
        22670, 28, 20, 6,
    )  # fmt: skip
    assert (record["hangupcause"], record["hangupdirection"]) == (10001, 10040)


def test_whole_floats_are_integers() -> None:
    record = normalise(answered(duration=28.0), context())

    assert record["duration"] == 28
    assert type(record["duration"]) is int


def test_numbers_in_string_fields_become_their_decimal_text() -> None:
    record = normalise(answered(extnumber=8001, destnumber=13387525701, userid=7.0), context())

    assert (record["extnumber"], record["destnumber"], record["userid"]) == (
        "8001", "13387525701", "7",
    )  # fmt: skip


@pytest.mark.parametrize("field", MAY_BE_EMPTY)
def test_null_or_missing_documented_empty_fields_become_empty_strings(field: str) -> None:
    nulled = answered(**{field: None})
    missing = answered()
    del missing[field]

    assert normalise(nulled, context())[field] == ""
    assert normalise(missing, context())[field] == ""


def test_a_new_direction_value_is_kept_as_it_is() -> None:
    assert normalise(answered(direction="transfer"), context())["direction"] == "transfer"


@pytest.mark.parametrize("empty", [None, "", "0000-00-00 00:00:00"])
def test_answertime_without_a_value_is_null(empty: Any) -> None:
    assert normalise(example_bill() | {"answertime": empty}, context())["answertime"] is None


def test_a_missing_answertime_is_null() -> None:
    bill = example_bill()
    del bill["answertime"]

    assert normalise(bill, context())["answertime"] is None


# --- unknown fields ---------------------------------------------------------------------------


def test_unknown_fields_are_kept_as_json_text() -> None:
    bill = answered(queue={"name": "售后", "wait": 12}, tags=["vip", 1], flag=True, note=None)

    extra = normalise(bill, context())["extra_fields"]

    assert extra == {
        "queue": '{"name":"售后","wait":12}',
        "tags": '["vip",1]',
        "flag": "true",
        "note": "null",
    }
    assert json.loads(extra["queue"]) == {"name": "售后", "wait": 12}


def test_an_unknown_field_that_is_not_json_is_an_error() -> None:
    error = rejected(answered(blob=object()))

    assert error.field == "blob"
    assert "field 'blob'" in str(error)


# --- errors name the field --------------------------------------------------------------------


@pytest.mark.parametrize("field", REQUIRED)
def test_a_missing_required_field_is_an_error_naming_it(field: str) -> None:
    bill = answered()
    del bill[field]

    error = rejected(bill)

    assert error.field == field
    assert str(error) == f"field {field!r} is missing; the API requires it"


@pytest.mark.parametrize("field", REQUIRED)
def test_a_null_required_field_is_an_error_naming_it(field: str) -> None:
    error = rejected(answered(**{field: None}))

    assert error.field == field
    assert str(error) == f"field {field!r} is null; the API requires it"


def test_an_impossible_date_is_named_in_the_message() -> None:
    error = rejected(example_bill() | {"starttime": "2023-02-30 10:00:00"})

    assert error.field == "starttime"
    assert str(error) == (
        "field 'starttime': '2023-02-30 10:00:00' is not a valid 'yyyy-mm-dd hh:mm:ss' time"
    )


@pytest.mark.parametrize(
    "text",
    [
        "2023-02-30 10:00:00",  # no such day
        "2019-13-01 10:00:00",  # no such month
        "2019-09-27 25:00:00",  # no such hour
        "2019-09-27 14:60:00",
        "2019-09-27 14:58:60",  # leap seconds are not written by PBXes
        "2023-02-30 25:61:61",
        "0000-00-00 00:00:00",  # "never" is no start time
        "2019/09/27 14:58:37",
        "2019-09-27T14:58:37",
        "2019-09-27T14:58:37+08:00",
        "2019-09-27 14:58",
        "2019-09-27 14:58:37.5",
        " 2019-09-27 14:58:3",
        "2019-09-27 14: 8:37",
        "2019-09-27 14:+8:37",
        "\uff12\uff10\uff11\uff19-09-27 14:58:37",  # fullwidth digits
        "2019-09-27 1\uff14:58:37",
        "",
    ],
)
def test_times_must_be_strict_and_possible(text: str) -> None:
    error = rejected(example_bill() | {"starttime": text, "endtime": "2019-09-27 14:59:05"})

    assert error.field == "starttime"
    assert f"{text!r} is not a valid 'yyyy-mm-dd hh:mm:ss' time" in str(error)


@pytest.mark.parametrize("value", [1569567517, 1569567517000, ["2019-09-27 14:58:37"], True])
def test_a_time_that_is_not_text_is_an_error(value: Any) -> None:
    error = rejected(example_bill() | {"endtime": value})

    assert error.field == "endtime"
    assert "expected a 'yyyy-mm-dd hh:mm:ss' string" in str(error)


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("duration", "28s", "'28s' is not an integer"),
        ("duration", "", "'' is not an integer"),
        ("duration", " 28", "' 28' is not an integer"),
        ("duration", "2_8", "'2_8' is not an integer"),
        ("duration", "٢٨", "'٢٨' is not an integer"),  # Arabic-Indic digits
        ("duration", 28.5, "28.5 is not a whole number"),
        ("duration", float("nan"), "nan is not a whole number"),
        ("duration", True, "True is a boolean, not an integer"),
        ("duration", -1, "-1 is negative"),
        ("billsec", -5, "-5 is negative"),
        ("duration", 2**31, "2147483648 is outside the range 0..2147483647"),
        ("callmethod", -(2**31) - 1, "-2147483649 is outside the range"),
        ("hangupcause", "NORMAL_CLEARING", "'NORMAL_CLEARING' is not an integer"),
        ("hangupdirection", {"code": 10040}, "expected an integer, got an object"),
    ],
)
def test_bad_integers_are_errors_naming_the_field(field: str, value: Any, problem: str) -> None:
    error = rejected(answered(**{field: value}))

    assert error.field == field
    assert str(error).startswith(f"field {field!r}: ")
    assert problem in str(error)


@pytest.mark.parametrize(
    "value",
    [
        2**63,
        "9" * 20,
        "9" * 30,
        [22670],
        22670.0,
        "22670.0",
        "-5",
        -5,
        0,
        "0",
        "٣",
        "²",
        " 7",
        True,
    ],
)
def test_an_id_is_a_positive_64_bit_integer_given_as_an_integer_or_ascii_digits(
    value: Any,
) -> None:
    error = rejected(answered(id=value))

    assert error.field == "id"
    assert "is not a usable id" in str(error)


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("userkey", {"pressed": ["1", "#"]}, "expected a string, got an object"),
        ("destnumber", ["13387525701"], "expected a string, got an array"),
        ("extnumber", False, "expected a string, got a boolean"),
        ("displaynumber", float("inf"), "expected a string, got a number"),
    ],
)
def test_bad_strings_are_errors_naming_the_field(field: str, value: Any, problem: str) -> None:
    error = rejected(answered(**{field: value}))

    assert error.field == field
    assert problem in str(error)


@pytest.mark.parametrize("bill", [None, [], "a bill", 22670, ["id", 1]])
def test_a_bill_that_is_not_an_object_is_an_error(bill: Any) -> None:
    error = rejected(bill)

    assert error.field is None
    assert str(error).startswith("a bill must be a JSON object")


def test_long_values_are_shortened_in_messages() -> None:
    error = rejected(answered(duration="9" * 500 + "x"))

    assert len(str(error)) < 200


# --- sanity -----------------------------------------------------------------------------------


def test_a_call_that_ends_before_it_starts_is_an_error() -> None:
    error = rejected(example_bill() | {"endtime": "2019-09-27 14:58:36"})

    assert error.field == "endtime"
    assert "is before starttime '2019-09-27 14:58:37'" in str(error)


@pytest.mark.parametrize("answer", ["2099-12-31 23:59:59", "2019-09-27 14:58:36"])
def test_an_answer_outside_the_call_is_an_error(answer: str) -> None:
    error = rejected(answered(answertime=answer))

    assert error.field == "answertime"
    assert "is not between starttime" in str(error)


def test_answer_at_the_start_or_the_end_is_fine() -> None:
    assert normalise(answered(answertime="2019-09-27 14:58:37"), context())["answertime"]
    assert normalise(answered(answertime="2019-09-27 14:59:05"), context())["answertime"]


def test_talk_time_may_exceed_the_call_by_one_second_of_rounding() -> None:
    assert normalise(answered(duration=28, billsec=29), context())["billsec"] == 29

    error = rejected(answered(duration=28, billsec=30))

    assert error.field == "billsec"
    assert "30 exceeds duration 28" in str(error)


def test_duration_is_not_compared_with_the_times() -> None:
    # The vendor's "duration" is loosely defined; only its sign is checked.
    assert normalise(answered(duration=3600, billsec=0), context())["duration"] == 3600


# --- daylight saving time (America/New_York) --------------------------------------------------


def new_york_call(start: str, end: str, answer: str | None = None) -> dict[str, Any]:
    return example_bill() | {"starttime": start, "endtime": end, "answertime": answer}


def test_an_ambiguous_time_is_read_as_its_first_occurrence() -> None:
    # 2024-11-03 01:30 happened twice in New York: 05:30Z (EDT) and 06:30Z (EST).
    bill = new_york_call("2024-11-03 01:30:00", "2024-11-03 01:40:00")

    record = normalise(bill, context(NEW_YORK))

    assert record["starttime"] == utc_ms(2024, 11, 3, 5, 30)
    assert record["endtime"] == utc_ms(2024, 11, 3, 5, 40)


def test_a_call_across_the_fall_back_change_ends_in_the_second_occurrence() -> None:
    # Started 01:50 EDT, answered and ended after clocks went back from 02:00 EDT to 01:00 EST.
    bill = new_york_call("2024-11-03 01:50:00", "2024-11-03 01:10:00", "2024-11-03 01:05:00")

    record = normalise(bill, context(NEW_YORK))

    assert record["starttime"] == utc_ms(2024, 11, 3, 5, 50)
    assert record["answertime"] == utc_ms(2024, 11, 3, 6, 5)
    assert record["endtime"] == utc_ms(2024, 11, 3, 6, 10)


def test_a_time_in_the_spring_forward_gap_uses_the_offset_before_the_change() -> None:
    # 02:00-03:00 on 2024-03-10 never happened in New York; read as EST like PEP 495 fold=0.
    bill = new_york_call("2024-03-10 01:59:59", "2024-03-10 02:30:00")

    record = normalise(bill, context(NEW_YORK))

    assert record["starttime"] == utc_ms(2024, 3, 10, 6, 59, 59)
    assert record["endtime"] == utc_ms(2024, 3, 10, 7, 30)


def test_the_hours_around_the_changes_have_their_own_offsets() -> None:
    spring = new_york_call("2024-03-10 01:00:00", "2024-03-10 03:00:00")
    autumn = new_york_call("2024-11-03 00:59:59", "2024-11-03 02:00:00")

    assert normalise(spring, context(NEW_YORK))["endtime"] == utc_ms(2024, 3, 10, 7)
    assert normalise(autumn, context(NEW_YORK))["starttime"] == utc_ms(2024, 11, 3, 4, 59, 59)
    assert normalise(autumn, context(NEW_YORK))["endtime"] == utc_ms(2024, 11, 3, 7)


@pytest.mark.parametrize(
    ("zone", "day"),
    [
        ("America/New_York", dt.date(2024, 3, 10)),
        ("America/New_York", dt.date(2024, 11, 3)),
        ("Australia/Lord_Howe", dt.date(2024, 4, 7)),  # clocks go back 30 minutes
        ("Australia/Lord_Howe", dt.date(2024, 10, 6)),
        ("Europe/Dublin", dt.date(2024, 10, 27)),  # "negative" daylight saving in tzdata
        ("America/Sao_Paulo", dt.date(2018, 11, 4)),  # changed at midnight
        ("America/Sao_Paulo", dt.date(2019, 2, 16)),
        ("Asia/Kathmandu", dt.date(2024, 6, 1)),  # +05:45
        ("Africa/Monrovia", dt.date(1972, 1, 7)),  # -00:44:30 -> UTC
        ("Asia/Shanghai", dt.date(1991, 9, 15)),  # China's last daylight saving change
    ],
)
def test_local_times_match_the_zone_rules_minute_by_minute(zone: str, day: dt.date) -> None:
    """The hourly offset cache against datetime's own PEP 495 arithmetic, across a change."""
    tz = ZoneInfo(zone)
    to_utc = _normaliser_of_times(tz)
    first = dt.datetime.combine(day - dt.timedelta(days=1), dt.time(22))
    for step in range(0, 30 * 60, 1):  # 30 hours, every minute, with varying seconds
        local = first + dt.timedelta(minutes=step, seconds=step % 60)
        text = local.strftime("%Y-%m-%d %H:%M:%S")
        expected = int(local.replace(tzinfo=tz).timestamp()) * 1000
        assert to_utc(text) == expected, text


def _normaliser_of_times(zone: ZoneInfo) -> Callable[[str], int]:
    """How `normalise` reads a time, cache included; days before 2000 are no believable calls,
    so the reader is called directly rather than through a whole bill."""
    clock = bill_rules.clock_for(zone)

    def to_utc(text: str) -> int:
        return bill_rules.required_time({"starttime": text}, "starttime", clock)

    return to_utc


# --- keys -------------------------------------------------------------------------------------


def key_of(bill: dict[str, Any], fallback: str = "displaynumber") -> bytes:
    return record_key(normalise(bill, context()), fallback)


def test_the_key_is_the_extension() -> None:
    assert key_of(answered(extnumber="8001")) == b"8001"


def test_without_extension_the_key_is_the_fallback_field() -> None:
    assert key_of(example_bill()) == b"2190170001"
    assert key_of(example_bill(), "destnumber") == b"13387525701"
    assert key_of(example_bill(), "id") == b"22670"


def test_without_extension_and_fallback_the_key_is_the_id() -> None:
    assert key_of(example_bill() | {"displaynumber": ""}) == b"22670"


def test_keys_are_utf8() -> None:
    assert key_of(example_bill() | {"displaynumber": "总机"}) == "总机".encode()


def test_the_fallback_defaults_to_displaynumber() -> None:
    assert record_key(normalise(example_bill(), context())) == b"2190170001"
