"""A bill as the vendor API gives it -> a normalised record matching `schemas/cdr_record.avsc`.

The vendor is loose about types, so `normalise` accepts what a bill plausibly holds and turns
it into exactly one shape, or raises `RecordError(stage="normalise", field=...)` saying which
field is wrong and how:

- Integers (`id`, `duration`, `billsec`, `callmethod`, `hangupdirection`, `hangupcause`) may
  come as JSON numbers or as decimal strings ("123"). Booleans, floats with a fractional part
  and anything outside the Avro int (long for `id`) range are rejected.
- String fields accept strings; numbers become their decimal string (`8001` -> "8001").
  `null` or a missing key is "" only for the fields the API documents as possibly empty
  (`extnumber`, `recordfilename`, `downloadip`, the four custom fields, `userkey`); for the
  other required fields it is an error.
- Times are the PBX's local wall clock, strictly `yyyy-mm-dd hh:mm:ss`, read in
  `RecordContext.zone` and stored as UTC epoch milliseconds. `answertime` is null when the
  bill says `null`, "" or "0000-00-00 00:00:00" (an unanswered call).
- Daylight saving time follows PEP 495 with `fold=0`: a local time in the repeated hour when
  clocks go back is read as its first occurrence, and a local time skipped when clocks go
  forward is read with the offset in force before the change (New York's 02:30 on the spring
  change day becomes 07:30Z). One exception keeps real calls out of the dead-letter topic: an
  `endtime` or `answertime` that would then come before `starttime` is read as the second
  occurrence, which is right for a call that crosses the change.
- Sanity: `endtime >= starttime`, `answertime` within `[starttime, endtime]`, `duration` and
  `billsec` not negative, and `billsec <= duration + BILLSEC_SLACK_SECONDS`. `duration` is not
  compared with `endtime - starttime`: the vendor does not define it precisely enough.
- Fields this module does not know are kept in `extra_fields`, JSON-encoded, so that a schema
  update can promote them without losing data.

This runs once per record on the connector's hot path, hence the type checks by `type(x) is`
before the general cases, and the time parsing by slicing with an hourly cache instead of
`datetime.strptime`.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from zoneinfo import ZoneInfo

import orjson

from cdr_connector.errors import RecordError

STAGE: Final = "normalise"

INT_MIN: Final = -(2**31)
INT_MAX: Final = 2**31 - 1
LONG_MIN: Final = -(2**63)
LONG_MAX: Final = 2**63 - 1

# PBXes that time answer and end with sub-second clocks can round talk time up past the whole
# call by a second; more than that means the bill is corrupt.
BILLSEC_SLACK_SECONDS: Final = 1

# Every field of the vendor's bill, in the order of its documentation and of the schema.
KNOWN_FIELDS: Final = frozenset(
    (
        "id", "extnumber", "destnumber", "displaynumber", "starttime", "answertime", "endtime",
        "duration", "billsec", "direction", "callmethod", "userid", "memberid", "chengshudu",
        "customuuid", "recordfilename", "downloadip", "hangupdirection", "hangupcause", "userkey",
    )
)  # fmt: skip

_TIME_FORMAT = "'yyyy-mm-dd hh:mm:ss'"
# "No answer": null from the vendor, "" or all zeros from some PBXes.
_NO_TIME: Final = ("", "0000-00-00 00:00:00")
_HOUR_PREFIX = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:")
# Maps "00:00".."59:59" to seconds: one dict look-up both validates and converts the end of a
# time (int() would also accept " 5", "+5" and non-ASCII digits).
MINUTE_SECOND: Final = {
    f"{minute:02d}:{second:02d}": minute * 60 + second
    for minute in range(60)
    for second in range(60)
}
# A year of hours is under 9000; a long backfill must not grow the cache without bound.
_MAX_CACHED_HOURS = 100_000
_EPOCH = dt.datetime(1970, 1, 1)
_ONE_SECOND = dt.timedelta(seconds=1)
_MAX_SHOWN = 80


@dataclass(frozen=True, slots=True)
class RecordContext:
    """Where and how a batch of bills was fetched; copied into every record's metadata."""

    source: str
    zone: ZoneInfo
    fetched_at_ms: int
    fetch_mode: str


def normalise(bill: Mapping[str, Any], context: RecordContext) -> dict[str, Any]:
    """The record for `bill`, shaped as `schemas/cdr_record.avsc` wants it.

    Raises `RecordError(stage="normalise")` naming the field when the bill cannot be read;
    the rules are in this module's docstring.
    """
    if type(bill) is not dict and not isinstance(bill, Mapping):
        raise RecordError(
            f"a bill must be a JSON object, not {_json_type(bill)}: {_show(bill)}", stage=STAGE
        )
    clock = _clock_for(context.zone)
    start = _required_time(bill, "starttime", clock)
    end = _required_time(bill, "endtime", clock)
    if end < start:
        end = _reread_after(bill, "endtime", clock, start)
    answer = _optional_time(bill, "answertime", clock)
    if answer is not None and not start <= answer <= end:
        answer = _reread_between(bill, "answertime", clock, start, end)
    duration = _integer(bill, "duration", 0, INT_MAX)
    billsec = _integer(bill, "billsec", 0, INT_MAX)
    if billsec > duration + BILLSEC_SLACK_SECONDS:
        raise RecordError(
            f"field 'billsec': {billsec} exceeds duration {duration}; "
            "talk time cannot be longer than the whole call",
            stage=STAGE,
            field="billsec",
        )
    return {
        "id": _integer(bill, "id", LONG_MIN, LONG_MAX),
        "extnumber": _optional_text(bill, "extnumber"),
        "destnumber": _required_text(bill, "destnumber"),
        "displaynumber": _required_text(bill, "displaynumber"),
        "starttime": start,
        "answertime": answer,
        "endtime": end,
        "duration": duration,
        "billsec": billsec,
        "direction": _required_text(bill, "direction"),
        "callmethod": _integer(bill, "callmethod", INT_MIN, INT_MAX),
        "userid": _optional_text(bill, "userid"),
        "memberid": _optional_text(bill, "memberid"),
        "chengshudu": _optional_text(bill, "chengshudu"),
        "customuuid": _optional_text(bill, "customuuid"),
        "recordfilename": _optional_text(bill, "recordfilename"),
        "downloadip": _optional_text(bill, "downloadip"),
        "hangupdirection": _integer(bill, "hangupdirection", INT_MIN, INT_MAX),
        "hangupcause": _integer(bill, "hangupcause", INT_MIN, INT_MAX),
        "userkey": _optional_text(bill, "userkey"),
        "extra_fields": {} if KNOWN_FIELDS.issuperset(bill) else _extra_fields(bill),
        "source": context.source,
        "fetched_at": context.fetched_at_ms,
        "pbx_timezone": context.zone.key or str(context.zone),
        "fetch_mode": context.fetch_mode,
    }


def record_key(record: Mapping[str, Any], fallback_field: str = "displaynumber") -> bytes:
    """The Kafka key of a normalised record, UTF-8: its extension, so that one extension's
    calls stay in one partition and in order; for calls without one (IVR, ring groups) the
    `fallback_field`, and if that is empty too, the record id."""
    extension: str = record["extnumber"]
    if extension:
        return extension.encode()
    fallback = record[fallback_field]
    text = fallback if type(fallback) is str else str(fallback)
    return (text or str(record["id"])).encode()


# --- integers ---------------------------------------------------------------------------------


def dial_time_ms(bill: Any, zone: ZoneInfo) -> int | None:
    """The bill's dial time in UTC epoch ms when it can be read, even if the bill as a whole
    cannot be normalised (the audit counts dead-lettered bills by their dial hour too)."""
    value = bill.get("starttime") if isinstance(bill, Mapping) else None
    if not isinstance(value, str):
        return None
    try:
        return _clock_for(zone).to_utc_ms(value)
    except ValueError:
        return None


def _integer(bill: Mapping[str, Any], field: str, low: int, high: int) -> int:
    value = bill.get(field)
    if type(value) is int and low <= value <= high:
        return value
    return _coerce_integer(bill, field, value, low, high)


def _coerce_integer(bill: Mapping[str, Any], field: str, value: Any, low: int, high: int) -> int:
    if value is None:
        raise _absent(bill, field)
    if isinstance(value, bool):
        raise _wrong(field, f"{_show(value)} is a boolean, not an integer")
    if isinstance(value, int):
        number = int(value)
    elif isinstance(value, str):
        number = _parse_integer(field, value)
    elif isinstance(value, float):
        if not value.is_integer():
            raise _wrong(field, f"{_show(value)} is not a whole number")
        number = int(value)
    else:
        raise _wrong(field, f"expected an integer, got {_json_type(value)} {_show(value)}")
    if not low <= number <= high:
        if low == 0 and number < 0:
            raise _wrong(field, f"{number} is negative; a number of seconds cannot be")
        raise _wrong(field, f"{number} is outside the range {low}..{high}")
    return number


def _parse_integer(field: str, text: str) -> int:
    digits = text[1:] if text.startswith("-") else text
    # str.isdigit alone accepts non-ASCII digits, and int() accepts spaces and underscores.
    if not (digits.isascii() and digits.isdigit()):
        raise _wrong(field, f"{_show(text)} is not an integer")
    if len(digits) > 19:  # longer than any 64-bit number; int() of huge strings is slow
        raise _wrong(field, f"{_show(text)} is outside the range of a 64-bit integer")
    return int(text)


# --- strings ----------------------------------------------------------------------------------


def _required_text(bill: Mapping[str, Any], field: str) -> str:
    value = bill.get(field)
    if type(value) is str:
        return value
    if value is None:
        raise _absent(bill, field)
    return _number_as_text(field, value)


def _optional_text(bill: Mapping[str, Any], field: str) -> str:
    value = bill.get(field)
    if type(value) is str:
        return value
    if value is None:
        return ""
    return _number_as_text(field, value)


def _number_as_text(field: str, value: Any) -> str:
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and math.isfinite(value):
        return str(int(value)) if value.is_integer() else repr(value)
    raise _wrong(field, f"expected a string, got {_json_type(value)} {_show(value)}")


# --- times ------------------------------------------------------------------------------------


class _LocalClock:
    """Reads the PBX's local `yyyy-mm-dd hh:mm:ss` in one zone as UTC epoch milliseconds.

    Offsets are cached per local hour, in `hours`: "yyyy-mm-dd hh:" -> UTC epoch seconds of
    its hh:00:00. An hour is cached only when its offset is the same at its first and last
    second with either fold, i.e. when no change of offset happens inside it; that holds
    unless a zone changed its offset twice within one hour, which no zone in the tz database
    does. Hours with a change take the exact path through `datetime` every time.
    """

    __slots__ = ("_zone", "hours")

    def __init__(self, zone: ZoneInfo) -> None:
        self._zone = zone
        self.hours: dict[str, int] = {}

    def to_utc_ms(self, text: str, fold: int = 0) -> int:
        """Raises ValueError when `text` is not a valid local time in the strict format.
        `_required_time` inlines the cached case of this."""
        seconds = MINUTE_SECOND.get(text[14:])
        prefix = text[:14]
        if seconds is None or not _HOUR_PREFIX.fullmatch(prefix):
            raise ValueError(text)
        hour_start = self.hours.get(prefix)
        if hour_start is None:
            hour_start = self._learn_hour(prefix)
        if hour_start is None:
            return self._exact_ms(prefix, seconds, fold)
        return (hour_start + seconds) * 1000

    def _learn_hour(self, prefix: str) -> int | None:
        first = self._hour_start(prefix)
        last = first.replace(minute=59, second=59)
        if len({_offset(first), _offset(last), _offset(first, 1), _offset(last, 1)}) > 1:
            return None
        hour_start = _utc_seconds(first)
        if len(self.hours) >= _MAX_CACHED_HOURS:
            self.hours.clear()
        self.hours[prefix] = hour_start
        return hour_start

    def _hour_start(self, prefix: str) -> dt.datetime:
        if not _HOUR_PREFIX.fullmatch(prefix):
            raise ValueError(prefix)
        # datetime() rejects impossible dates and hours (2023-02-30, 25:00) with ValueError.
        return dt.datetime(
            int(prefix[0:4]), int(prefix[5:7]), int(prefix[8:10]), int(prefix[11:13]),
            tzinfo=self._zone,
        )  # fmt: skip

    def _exact_ms(self, prefix: str, seconds: int, fold: int) -> int:
        minute, second = divmod(seconds, 60)
        moment = self._hour_start(prefix).replace(minute=minute, second=second, fold=fold)
        return _utc_seconds(moment) * 1000


def _offset(moment: dt.datetime, fold: int = 0) -> dt.timedelta:
    return moment.replace(fold=fold).utcoffset() or dt.timedelta(0)


def _utc_seconds(moment: dt.datetime) -> int:
    """Epoch seconds of an aware local time, its fold deciding the repeated hour (PEP 495)."""
    return (moment.replace(tzinfo=None) - _EPOCH - _offset(moment, moment.fold)) // _ONE_SECOND


_CLOCKS: dict[ZoneInfo, _LocalClock] = {}


def _clock_for(zone: ZoneInfo) -> _LocalClock:
    clock = _CLOCKS.get(zone)
    if clock is None:
        clock = _CLOCKS[zone] = _LocalClock(zone)
    return clock


def cached_hours(zone: ZoneInfo) -> dict[str, int]:
    """The zone's hours without a change of UTC offset that `normalise` has met so far:
    "yyyy-mm-dd hh:" -> UTC epoch seconds of hh:00:00. Read-only for callers."""
    return _clock_for(zone).hours


def _required_time(bill: Mapping[str, Any], field: str, clock: _LocalClock) -> int:
    value = bill.get(field)
    if type(value) is str:
        # The cached case of clock.to_utc_ms, inlined: this runs three times per record.
        # Hits on both the 14-character and the 5-character key mean 19 valid characters.
        hour_start = clock.hours.get(value[:14])
        seconds = MINUTE_SECOND.get(value[14:])
        if hour_start is not None and seconds is not None:
            return (hour_start + seconds) * 1000
    if isinstance(value, str):
        try:
            return clock.to_utc_ms(value)
        except ValueError:
            raise _bad_time(field, value) from None
    if value is None:
        raise _absent(bill, field)
    raise _bad_time(field, value)


def _optional_time(bill: Mapping[str, Any], field: str, clock: _LocalClock) -> int | None:
    value = bill.get(field)
    if value is None or value in _NO_TIME:
        return None
    return _required_time(bill, field, clock)


def _reread_after(bill: Mapping[str, Any], field: str, clock: _LocalClock, start: int) -> int:
    """`field`'s second reading, for a call that ended in the repeated hour after clocks went
    back; raises if the time is before the start either way."""
    moment = clock.to_utc_ms(bill[field], fold=1)
    if moment < start:
        raise RecordError(
            f"field {field!r}: {_show(bill[field])} is before starttime {_show(bill['starttime'])}",
            stage=STAGE,
            field=field,
        )
    return moment


def _reread_between(
    bill: Mapping[str, Any], field: str, clock: _LocalClock, start: int, end: int
) -> int:
    moment = clock.to_utc_ms(bill[field], fold=1)
    if not start <= moment <= end:
        raise RecordError(
            f"field {field!r}: {_show(bill[field])} is not between starttime "
            f"{_show(bill['starttime'])} and endtime {_show(bill['endtime'])}",
            stage=STAGE,
            field=field,
        )
    return moment


# --- unknown fields ---------------------------------------------------------------------------


def _extra_fields(bill: Mapping[str, Any]) -> dict[str, str]:
    extra: dict[str, str] = {}
    for name, value in bill.items():
        if name in KNOWN_FIELDS:
            continue
        if not isinstance(name, str):
            raise RecordError(
                f"field {_show(name)}: field names must be strings", stage=STAGE, field=str(name)
            )
        try:
            extra[name] = orjson.dumps(value).decode()
        except orjson.JSONEncodeError as exc:
            raise _wrong(name, f"value cannot be kept as JSON ({exc})") from exc
    return extra


# --- messages ---------------------------------------------------------------------------------


def _absent(bill: Mapping[str, Any], field: str) -> RecordError:
    what = "is null" if field in bill else "is missing"
    return RecordError(f"field {field!r} {what}; the API requires it", stage=STAGE, field=field)


def _bad_time(field: str, value: Any) -> RecordError:
    if isinstance(value, str):
        return _wrong(field, f"{_show(value)} is not a valid {_TIME_FORMAT} time")
    return _wrong(
        field, f"expected a {_TIME_FORMAT} string, got {_json_type(value)} {_show(value)}"
    )


def _wrong(field: str, problem: str) -> RecordError:
    return RecordError(f"field {field!r}: {problem}", stage=STAGE, field=field)


def _show(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= _MAX_SHOWN else shown[: _MAX_SHOWN - 3] + "..."


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    return f"a {type(value).__name__}"
