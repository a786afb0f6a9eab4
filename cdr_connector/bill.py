"""What a bill is: the one definition of its id, its integers, its texts, its times and the
bounds within which they are believable. Every reader of a bill's fields (the poller, the
batch writer, both writers, the checkpoint, the dead-letter path) reads them here.

Everything the vendor sends is treated as hostile, and a bill either satisfies every rule
below or is dead-lettered with the rule it breaks (`RecordError`, naming the field):

- The id is an integer in 1..2**63-1 (`ID_MIN`..`ID_MAX`), given as a JSON integer or as a
  string of 1 to 19 ASCII digits. Anything else (a float, "-5", "12.5", "٣", null, a list, 20
  digits) is *no usable id*: such a bill is dead-lettered once, known by its content
  (`checkpoint.bill_fingerprint`). An id out of that range can never reach the state.
- Other integers (`duration`, `billsec`, `callmethod`, `hangupdirection`, `hangupcause`) are
  JSON integers, decimal strings of ASCII digits with an optional leading "-", or floats with
  no fractional part, inside the Avro int range; `duration` and `billsec` are not negative.
- Texts are strings of at most `MAX_TEXT_BYTES` bytes of UTF-8, or numbers (their decimal
  text); `null` or missing is "" only for the fields the API documents as possibly empty. A
  string that is not valid Unicode (a lone surrogate) is not a text.
- Times are the PBX's wall clock, `yyyy-mm-dd hh:mm:ss` (see `records` for time zones). A call
  is believable only if it starts no earlier than `EARLIEST_START_MS` (2000-01-01) and ends
  no later than `MAX_END_AHEAD_MS` (a day) after it was fetched; otherwise a single far-future
  bill would freeze the freshness metrics, or a year-1970 one fill the audit's hours.
- `billsec <= duration + BILLSEC_SLACK_SECONDS`, `endtime >= starttime`, `answertime` within.

A bill whose bytes cannot be read as JSON at all arrives as an `UnreadableBill` (the API
client's tolerant parser sets it apart from the sound bills of its page): it is dead-lettered
with its raw bytes, under its id when that much of it could be read.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, NoReturn
from zoneinfo import ZoneInfo

import orjson

from cdr_connector.errors import RecordError

STAGE: Final = "normalise"

ID_MIN: Final = 1
ID_MAX: Final = 2**63 - 1
_ID_DIGITS_MAX: Final = 19  # len(str(ID_MAX))
INT_MIN: Final = -(2**31)
INT_MAX: Final = 2**31 - 1

# PBXes that time answer and end with sub-second clocks can round talk time up past the whole
# call by a second; more than that means the bill is corrupt.
BILLSEC_SLACK_SECONDS: Final = 1
# A call record's longest field is a custom value or a file path; 16 KiB is far beyond any
# real one and bounds what one bill can make the connector hold and publish.
MAX_TEXT_BYTES: Final = 16_384
# 2000-01-01T00:00:00Z: no PBX this connector serves wrote bills before it; an earlier time is
# a zeroed or garbled clock.
EARLIEST_START_MS: Final = 946_684_800_000
# A call cannot end more than a day after it was fetched, whatever the PBX's clock skew.
MAX_END_AHEAD_MS: Final = 86_400_000

# Every field of the vendor's bill, in the order of its documentation and of the schema.
KNOWN_FIELDS: Final = frozenset(
    (
        "id", "extnumber", "destnumber", "displaynumber", "starttime", "answertime", "endtime",
        "duration", "billsec", "direction", "callmethod", "userid", "memberid", "chengshudu",
        "customuuid", "recordfilename", "downloadip", "hangupdirection", "hangupcause", "userkey",
    )
)  # fmt: skip

# "No answer": null from the vendor, "" or all zeros from some PBXes.
NO_ANSWER_TEXTS: Final = ("", "0000-00-00 00:00:00")
_TIME_FORMAT = "'yyyy-mm-dd hh:mm:ss'"
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
# The longest text `show` gives an error message.
MAX_SHOWN = 80


@dataclass(frozen=True, slots=True)
class UnreadableBill:
    """An element of a page's `bills` that is not readable JSON (invalid UTF-8, a lone
    surrogate, NaN, nesting too deep, ...), kept as the vendor sent it.

    `id` is the bill's usable id when the element is an object whose `id` member could be read
    on its own, else None.
    """

    raw: bytes
    reason: str
    id: int | None = None


def usable_id(value: Any) -> int | None:
    """`value` as a bill id, or None when it is not a usable one (see the module)."""
    if type(value) is int:  # the common case first: this runs once per bill
        return value if ID_MIN <= value <= ID_MAX else None
    if (
        type(value) is str
        and 0 < len(value) <= _ID_DIGITS_MAX
        and value.isascii()
        and value.isdigit()
    ):
        number = int(value)
        return number if ID_MIN <= number <= ID_MAX else None
    return None


def bill_id(bill: Any) -> int | None:
    """The bill's id, or None when it has no usable id."""
    if type(bill) is dict:
        return usable_id(bill.get("id"))
    if isinstance(bill, UnreadableBill):
        return bill.id
    return None


# --- integers ---------------------------------------------------------------------------------


def integer_value(value: Any) -> int | None:
    """`value` as an integer when it is one in any form the vendor uses: a JSON integer, a
    float without a fractional part (PHP servers send either), or a decimal string of ASCII
    digits with an optional "-" and at most 19 digits. Otherwise None. Ranges are the caller's.
    """
    if type(value) is int:
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        digits = value[1:] if value.startswith("-") else value
        # str.isdigit alone accepts non-ASCII digits ("٣", "²"), and int() accepts spaces and
        # underscores; more than 19 digits is beyond any 64-bit number, and int() of a huge
        # string is slow.
        if 0 < len(digits) <= _ID_DIGITS_MAX and digits.isascii() and digits.isdigit():
            return int(value)
    return None


def record_id(bill: Mapping[str, Any]) -> int:
    """The bill's usable id; raises `RecordError(field="id")` saying why there is none."""
    value = bill.get("id")
    found = usable_id(value)
    if found is not None:
        return found
    if value is None:
        raise _absent(bill, "id")
    return _fail(
        "id",
        f"{show(value)} is not a usable id: an integer {ID_MIN}..{ID_MAX}, as a JSON integer "
        "or a string of ASCII digits",
    )


def integer(bill: Mapping[str, Any], field: str, low: int, high: int) -> int:
    """The integer field `field` within [low, high]; raises `RecordError` naming the field."""
    value = bill.get(field)
    if type(value) is int and low <= value <= high:
        return value
    number = integer_value(value)
    if number is None:
        if value is None:
            raise _absent(bill, field)
        if isinstance(value, bool):
            return _fail(field, f"{show(value)} is a boolean, not an integer")
        if isinstance(value, float):
            return _fail(field, f"{show(value)} is not a whole number")
        if isinstance(value, str):
            return _fail(field, f"{show(value)} is not an integer of at most 19 ASCII digits")
        return _fail(field, f"expected an integer, got {json_type(value)} {show(value)}")
    if not low <= number <= high:
        if low == 0 and number < 0:
            return _fail(field, f"{number} is negative; a number of seconds cannot be")
        return _fail(field, f"{number} is outside the range {low}..{high}")
    return number


# --- texts ------------------------------------------------------------------------------------


def required_text(bill: Mapping[str, Any], field: str) -> str:
    value = bill.get(field)
    if value is None:
        raise _absent(bill, field)
    return _text(field, value)


def optional_text(bill: Mapping[str, Any], field: str) -> str:
    value = bill.get(field)
    return "" if value is None else _text(field, value)


def _text(field: str, value: Any) -> str:
    if isinstance(value, str):
        text = str(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        text = str(int(value))
    elif isinstance(value, float) and math.isfinite(value):
        text = str(int(value)) if value.is_integer() else repr(value)
    else:
        return _fail(field, f"expected a string, got {json_type(value)} {show(value)}")
    try:
        size = len(text.encode())
    except UnicodeEncodeError:
        return _fail(field, f"{show(text)} is not valid Unicode (a lone surrogate)")
    if size > MAX_TEXT_BYTES:
        return _fail(field, f"{size} bytes, more than the {MAX_TEXT_BYTES} a bill's text may hold")
    return text


def unknown_fields(bill: Mapping[str, Any]) -> dict[str, str]:
    """The fields `KNOWN_FIELDS` does not name, each as its JSON text (kept in the record's
    `extra_fields`, so that a schema update can promote them without losing data)."""
    extra: dict[str, str] = {}
    for name, value in bill.items():
        if name in KNOWN_FIELDS:
            continue
        if not isinstance(name, str):
            raise RecordError(
                f"field {show(name)}: field names must be strings", stage=STAGE, field=str(name)
            )
        try:
            encoded = orjson.dumps(value)
        except orjson.JSONEncodeError as exc:
            return _fail(name, f"value cannot be kept as JSON ({exc})")
        if len(encoded) > MAX_TEXT_BYTES:
            return _fail(
                name, f"{len(encoded)} bytes of JSON, more than the {MAX_TEXT_BYTES} it may hold"
            )
        extra[name] = encoded.decode()
    return extra


# --- the call as a whole ----------------------------------------------------------------------


def sound_call(  # noqa: PLR0917  called positionally once per bill: keywords cost time
    record_id: int,
    start_ms: int,
    answer_ms: int | None,
    end_ms: int,
    duration: int,
    billsec: int,
    callmethod: int,
    hangupdirection: int,
    hangupcause: int,
    fetched_at_ms: int,
) -> bool:
    """Whether a bill's numbers and times, already read, satisfy every rule of the module: the
    one statement of those rules, which both writers apply (`call_problem` says which failed).
    """
    return (
        ID_MIN <= record_id <= ID_MAX
        and 0 <= duration <= INT_MAX
        and 0 <= billsec <= INT_MAX
        and billsec <= duration + BILLSEC_SLACK_SECONDS
        and INT_MIN <= callmethod <= INT_MAX
        and INT_MIN <= hangupdirection <= INT_MAX
        and INT_MIN <= hangupcause <= INT_MAX
        and EARLIEST_START_MS <= start_ms <= end_ms <= fetched_at_ms + MAX_END_AHEAD_MS
        and (answer_ms is None or start_ms <= answer_ms <= end_ms)
    )


def call_problem(
    bill: Mapping[str, Any],
    *,
    start_ms: int,
    end_ms: int,
    duration: int,
    billsec: int,
    fetched_at_ms: int,
) -> RecordError:
    """Why `sound_call` is false for a bill whose fields each read correctly: the rules that
    relate fields to each other and to the moment of fetching."""
    if billsec > duration + BILLSEC_SLACK_SECONDS:
        return _wrong(
            "billsec",
            f"{billsec} exceeds duration {duration}; talk time cannot be longer than the call",
        )
    if start_ms < EARLIEST_START_MS:
        return _wrong(
            "starttime",
            f"{show(bill.get('starttime'))} is before 2000-01-01; the PBX's clock was not set",
        )
    if end_ms > fetched_at_ms + MAX_END_AHEAD_MS:
        return _wrong(
            "endtime",
            f"{show(bill.get('endtime'))} is more than a day after the bill was fetched",
        )
    # Unreachable while each field was read within its range; a bug if it is not.
    return RecordError("the bill's numbers or times are inconsistent", stage=STAGE)


# --- times ------------------------------------------------------------------------------------


class LocalClock:
    """Reads the PBX's local `yyyy-mm-dd hh:mm:ss` in one zone as UTC epoch milliseconds.

    Offsets are cached per local hour, in `hours`: "yyyy-mm-dd hh:" -> UTC epoch seconds of
    its hh:00:00. An hour is cached only when its offset is the same at its first and last
    second with either fold, i.e. when no change of offset happens inside it; that holds
    unless a zone changed its offset twice within one hour, which no zone in the tz database
    does. Hours with a change take the exact path through `datetime` every time.
    """

    __slots__ = ("_max_hours", "_zone", "hours")

    def __init__(self, zone: ZoneInfo, max_hours: int = _MAX_CACHED_HOURS) -> None:
        self._zone = zone
        self._max_hours = max_hours  # the cache is emptied when it holds this many
        self.hours: dict[str, int] = {}

    def to_utc_ms(self, text: str, fold: int = 0) -> int:
        """Raises ValueError when `text` is not a valid local time in the strict format.
        `required_time` inlines the cached case of this."""
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
        if len(self.hours) >= self._max_hours:
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


_CLOCKS: dict[ZoneInfo, LocalClock] = {}


def clock_for(zone: ZoneInfo) -> LocalClock:
    clock = _CLOCKS.get(zone)
    if clock is None:
        clock = _CLOCKS[zone] = LocalClock(zone)
    return clock


def cached_hours(zone: ZoneInfo) -> dict[str, int]:
    """The zone's hours without a change of UTC offset met so far: "yyyy-mm-dd hh:" -> UTC
    epoch seconds of hh:00:00. Read-only for callers."""
    return clock_for(zone).hours


def required_time(bill: Mapping[str, Any], field: str, clock: LocalClock) -> int:
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


def optional_time(bill: Mapping[str, Any], field: str, clock: LocalClock) -> int | None:
    value = bill.get(field)
    if value is None or value in NO_ANSWER_TEXTS:
        return None
    return required_time(bill, field, clock)


def dial_time_ms(bill: Any, zone: ZoneInfo, fetched_at_ms: int) -> int | None:
    """The bill's dial time in UTC epoch ms when it can be read and is believable, even if the
    bill as a whole cannot be a record (the audit counts dead-lettered bills by their dial
    hour too); None otherwise, so that no garbled time enters the audit's counts."""
    try:
        value = bill.get("starttime") if isinstance(bill, Mapping) else None
        start_ms = clock_for(zone).to_utc_ms(value) if isinstance(value, str) else None
    except Exception:  # a bill is hostile: even reading it may fail, and this cannot
        return None
    if start_ms is None:
        return None
    if not EARLIEST_START_MS <= start_ms <= fetched_at_ms + MAX_END_AHEAD_MS:
        return None
    return start_ms


# --- messages ---------------------------------------------------------------------------------


def _absent(bill: Mapping[str, Any], field: str) -> RecordError:
    what = "is null" if field in bill else "is missing"
    return RecordError(f"field {field!r} {what}; the API requires it", stage=STAGE, field=field)


def _bad_time(field: str, value: Any) -> RecordError:
    if isinstance(value, str):
        return _wrong(field, f"{show(value)} is not a valid {_TIME_FORMAT} time")
    return _wrong(field, f"expected a {_TIME_FORMAT} string, got {json_type(value)} {show(value)}")


def _wrong(field: str, problem: str) -> RecordError:
    return RecordError(f"field {field!r}: {problem}", stage=STAGE, field=field)


def _fail(field: str, problem: str) -> NoReturn:
    raise _wrong(field, problem)


def show(value: Any) -> str:
    """`value` as a short text for an error message."""
    shown = repr(value)
    return shown if len(shown) <= MAX_SHOWN else shown[: MAX_SHOWN - 3] + "..."


def json_type(value: Any) -> str:
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


def raw_bytes(bill: Any, *, sort_keys: bool = False) -> bytes:
    """The bill as bytes, for the dead-letter topic and for fingerprints: the vendor's own bytes
    of an unreadable bill, the JSON of any other (what orjson read, it can write)."""
    if isinstance(bill, UnreadableBill):
        return bill.raw
    try:
        return orjson.dumps(bill, option=orjson.OPT_SORT_KEYS if sort_keys else None)
    except orjson.JSONEncodeError:  # not from orjson.loads: a test's or a future reader's value
        return orjson.dumps(repr(bill))
