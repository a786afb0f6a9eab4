"""A bill -> its Kafka value in one pass, for bills of the usual shape.

`records.normalise` followed by an `avro.RecordEncoder` is what a record *is*: it accepts every
shape the vendor may send, says precisely what is wrong with a bill that cannot be read, and
writes through fastavro's generic writer. On the hot path that costs about 12 µs a record,
most of it building a 25-key dict and fastavro's per-field dispatch over it.

`BillWriter.write_common` produces the same bytes straight from the bill, for the fixed field
list of `schemas/cdr_record.avsc`, in about half of that (bench/README.md, stage b). It is a
pure optimisation of that definition, with no rule of its own: it takes only bills of the
usual *shape* (every field of the right JSON type, or an id or seconds given as a decimal
string; times in an hour whose UTC offset is already cached; no field the schema does not
know; texts short enough for its length table) and asks `bill.sound_call`, the one statement
of the rules on a bill's numbers and times, whether the bill is sound. For anything else it
returns None, and `BillWriter.write` takes the general path, which also produces the errors; so
a bill is never judged differently here. A property-based test holds the two paths (and both
builds) to identical bytes or identical refusal.

Installed with a C compiler at hand, this module is compiled by mypyc (setup.py), which takes
about a quarter off its time; the source is the same either way, and tests run both builds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, NamedTuple

from cdr_connector.avro import RecordEncoder
from cdr_connector.bill import (
    KNOWN_FIELDS,
    MINUTE_SECOND,
    NO_ANSWER_TEXTS,
    cached_hours,
    integer_value,
    sound_call,
    usable_id,
)
from cdr_connector.records import RecordContext, normalise, record_key

_EMPTY_MAP: Final = b"\x00"
_NULL_BRANCH: Final = b"\x00"
_LONG_BRANCH: Final = b"\x02"
# Distinct integers and times seen recently -> their varint. Calls cluster in time and share
# durations and codes, so most look-ups hit; the bound keeps a long backfill from growing it.
# Shared by all writers: dict operations are atomic, and a lost insert only costs a recompute.
_LONGS: dict[int, bytes] = {}
_COMMON_TEXTS: dict[Any, bytes] = {}  # looked up with whatever a bill holds; keys are str
_MAX_MEMO = 1 << 16
# Texts longer than this many bytes are rare enough for the general path.
_MAX_TEXT_BYTES = 4095
_OPTIONAL, _REQUIRED = True, False  # may a text field be null (written as "")?

WRITTEN_FIELDS: Final = (
    "id", "extnumber", "destnumber", "displaynumber", "starttime", "answertime", "endtime",
    "duration", "billsec", "direction", "callmethod", "userid", "memberid", "chengshudu",
    "customuuid", "recordfilename", "downloadip", "hangupdirection", "hangupcause", "userkey",
    "extra_fields", "source", "fetched_at", "pbx_timezone", "fetch_mode",
)  # fmt: skip
"""The schema's fields in the order `write_common` writes them (Avro's binary form is the
fields' values in schema order, nothing else). A field added to the schema must be written here
too; tests/unit/test_schema_change.py says so when it is not."""


class EncodedRecord(NamedTuple):
    """What the pipeline needs of a record once its value is written."""

    id: int
    key: bytes
    value: bytes
    starttime: int
    """UTC epoch milliseconds, as in the record."""
    endtime: int
    answered: bool
    direction: str
    callmethod: int
    billsec: int
    unknown_fields: int


def zigzag_varint(number: int) -> bytes:
    """Avro's encoding of an int or long: zig-zag, then 7 bits a byte, low bits first."""
    value = (number << 1) ^ (number >> 63)
    if value < 0x4000:  # small numbers: lengths, codes, durations
        return bytes((value,)) if value < 0x80 else bytes(((value & 0x7F) | 0x80, value >> 7))
    if value < 1 << 28:  # ids up to 134 million
        if value < 1 << 21:
            return bytes(((value & 0x7F) | 0x80, (value >> 7 & 0x7F) | 0x80, value >> 14))
        return bytes(
            (
                (value & 0x7F) | 0x80,
                (value >> 7 & 0x7F) | 0x80,
                (value >> 14 & 0x7F) | 0x80,
                value >> 21,
            )
        )
    if 1 << 35 <= value < 1 << 42:  # epoch milliseconds from 1971 to 2039
        return bytes(
            (
                (value & 0x7F) | 0x80,
                (value >> 7 & 0x7F) | 0x80,
                (value >> 14 & 0x7F) | 0x80,
                (value >> 21 & 0x7F) | 0x80,
                (value >> 28 & 0x7F) | 0x80,
                value >> 35,
            )
        )
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def is_compiled() -> bool:
    """Whether this module runs as its mypyc build rather than from its Python source."""
    return not __file__.endswith(".py")


# The varint of every text length up to the limit.
_SIZES: Final = tuple(zigzag_varint(size) for size in range(_MAX_TEXT_BYTES + 1))


class BillWriter:
    """Writes the bills of one batch (one `RecordContext`)."""

    __slots__ = (
        "_context",
        "_encoder",
        "_fallback",
        "_fetched_at_ms",
        "_header",
        "_hours",
        "_tail",
    )

    def __init__(
        self,
        encoder: RecordEncoder,
        context: RecordContext,
        fallback_field: str = "displaynumber",
    ) -> None:
        self._encoder = encoder
        self._context = context
        self._header = encoder.header
        self._hours = cached_hours(context.zone)
        self._fallback = fallback_field
        self._fetched_at_ms = context.fetched_at_ms
        zone = context.zone.key or str(context.zone)
        # extra_fields (empty), then the context's fields: the same for the whole batch.
        self._tail = b"".join(
            (
                _EMPTY_MAP,
                *_text_parts(context.source),
                zigzag_varint(context.fetched_at_ms),
                *_text_parts(zone),
                *_text_parts(context.fetch_mode),
            )
        )

    def write(self, bill: Any) -> EncodedRecord:
        """The bill's record; raises `RecordError` (stage normalise or encode) for a bill that
        cannot be one."""
        return self.write_common(bill) or self._write_general(bill)

    def _write_general(self, bill: Any) -> EncodedRecord:
        record = normalise(bill, self._context)
        return EncodedRecord(
            record["id"],
            record_key(record, self._fallback),
            self._encoder.encode(record),
            record["starttime"],
            record["endtime"],
            record["answertime"] is not None,
            record["direction"],
            record["callmethod"],
            record["billsec"],
            len(record["extra_fields"]),
        )

    def write_common(self, bill: Any) -> EncodedRecord | None:
        """The bill's record if it has the usual shape, else None (see the module)."""
        if type(bill) is not dict or not KNOWN_FIELDS.issuperset(bill):
            return None
        get = bill.get
        start = self._time(get("starttime"))
        end = self._time(get("endtime"))
        if start is None or end is None or end < start:
            return None
        answer_text = get("answertime")
        if answer_text is None or answer_text in NO_ANSWER_TEXTS:
            answer = None
        else:
            answer = self._time(answer_text)
            if answer is None:
                return None
        record_id = get("id")
        duration = get("duration")
        billsec = get("billsec")
        if not (type(record_id) is int and type(duration) is int and type(billsec) is int):
            record_id = usable_id(record_id)
            duration = integer_value(duration)
            billsec = integer_value(billsec)
            if record_id is None or duration is None or billsec is None:
                return None
        callmethod = get("callmethod")
        hangupdirection = get("hangupdirection")
        hangupcause = get("hangupcause")
        direction = get("direction")
        if not (
            type(callmethod) is int
            and type(hangupdirection) is int
            and type(hangupcause) is int
            and type(direction) is str
        ):
            return None
        start_ms, end_ms = start * 1000, end * 1000
        answer_ms = None if answer is None else answer * 1000
        if not sound_call(
            record_id, start_ms, answer_ms, end_ms, duration, billsec, callmethod,
            hangupdirection, hangupcause, self._fetched_at_ms,
        ):  # fmt: skip
            return None
        extension = get("extnumber")
        try:
            value = self._value(
                get, extension, direction,
                (record_id, start_ms, answer_ms, end_ms, duration, billsec, callmethod,
                 hangupdirection, hangupcause),
            )  # fmt: skip
        except (_NotPlainTextError, TypeError):  # TypeError: an unhashable text value
            return None
        return _record(
            record_id=record_id, key=_key(extension) or self._fallback_key(record_id, bill),
            value=value, starttime=start_ms, endtime=end_ms, answered=answer_ms is not None,
            direction=direction, callmethod=callmethod, billsec=billsec, unknown_fields=0,
        )  # fmt: skip

    def _value(
        self, get: Callable[[str], Any], extension: Any, direction: str, call: _Numbers
    ) -> bytes:
        """The Avro value, the fields in `WRITTEN_FIELDS` order after the header, of a bill
        (`get` is its `get`) whose numbers are checked; raises `_NotPlainTextError`, or
        TypeError for an unhashable value, where a text field is not of the usual shape."""
        (record_id, start_ms, answer_ms, end_ms, duration, billsec, callmethod, hangupdirection,
         hangupcause) = call  # fmt: skip
        common, unique = _COMMON_TEXTS.get, _unique_text
        texts = (
            common(extension) or _common_text(extension, _OPTIONAL),
            unique(get("destnumber"), _REQUIRED),
            unique(get("displaynumber"), _REQUIRED),
            common(direction) or _common_text(direction, _REQUIRED),
            common(userid := get("userid")) or _common_text(userid, _OPTIONAL),
            unique(get("memberid"), _OPTIONAL),
            common(maturity := get("chengshudu")) or _common_text(maturity, _OPTIONAL),
            unique(get("customuuid"), _OPTIONAL),
            unique(get("recordfilename"), _OPTIONAL),
            common(address := get("downloadip")) or _common_text(address, _OPTIONAL),
            common(keys := get("userkey")) or _common_text(keys, _OPTIONAL),
        )
        known, long = _LONGS.get, _long  # `known(n) or long(n)`: no call when remembered
        if answer_ms is None:
            answer_union = _NULL_BRANCH
        else:
            answer_union = _LONG_BRANCH + (known(answer_ms) or long(answer_ms))
        return b"".join(
            (
                self._header,
                zigzag_varint(record_id),
                texts[0], texts[1], texts[2],
                known(start_ms) or long(start_ms),
                answer_union,
                known(end_ms) or long(end_ms),
                known(duration) or long(duration),
                known(billsec) or long(billsec),
                texts[3],
                known(callmethod) or long(callmethod),
                texts[4], texts[5], texts[6], texts[7], texts[8], texts[9],
                known(hangupdirection) or long(hangupdirection),
                known(hangupcause) or long(hangupcause),
                texts[10],
                self._tail,
            )
        )  # fmt: skip

    def _time(self, text: Any) -> int | None:
        """UTC epoch seconds of a local time in a cached hour."""
        if type(text) is not str:
            return None
        hour_start = self._hours.get(text[:14])
        seconds = MINUTE_SECOND.get(text[14:])
        if hour_start is None or seconds is None:
            return None
        return hour_start + seconds

    def _fallback_key(self, record_id: int, bill: dict[str, Any]) -> bytes:
        """`records.record_key` for a call without an extension."""
        field = self._fallback
        text = _key(bill.get(field)) if field != "id" else b""
        return text or str(record_id).encode()


_new_record = tuple.__new__  # looked up once: `tuple.__new__` in the body is looked up per call


def _record(
    *,
    record_id: int,
    key: bytes,
    value: bytes,
    starttime: int,
    endtime: int,
    answered: bool,
    direction: str,
    callmethod: int,
    billsec: int,
    unknown_fields: int,
) -> EncodedRecord:
    """`EncodedRecord(...)`, each field typed and named, without the class's Python-level
    `__new__`: that costs about 0.2 µs a record in the compiled build (bench/README.md,
    "Checked construction"). Field for field in `EncodedRecord`'s order, which the tests
    comparing this path's records with the general path's hold it to."""
    return _new_record(
        EncodedRecord,
        (record_id, key, value, starttime, endtime, answered, direction, callmethod, billsec,
         unknown_fields),
    )  # fmt: skip


_Numbers = tuple[int, int, int | None, int, int, int, int, int, int]
"""A call's numbers, in `bill.sound_call`'s order: id, start, answer and end (ms), duration,
billsec, callmethod, hangupdirection, hangupcause. A tuple, which the compiled build passes
by value."""


class _NotPlainTextError(Exception):
    """A text field holds something only `records.normalise` can judge."""


def _long(number: int) -> bytes:
    found = _LONGS.get(number)
    if found is None:
        if len(_LONGS) >= _MAX_MEMO:
            _LONGS.clear()
        found = _LONGS[number] = zigzag_varint(number)
    return found


def _common_text(value: Any, optional: bool) -> bytes:
    """The Avro string of a field with few distinct values, remembered."""
    chunk = _unique_text(value, optional)
    if type(value) is str:
        if len(_COMMON_TEXTS) >= _MAX_MEMO:
            _COMMON_TEXTS.clear()
        _COMMON_TEXTS[value] = chunk
    return chunk


def _unique_text(value: Any, optional: bool) -> bytes:
    """The Avro string (length, UTF-8) of a text field as `records.normalise` reads it."""
    if type(value) is not str:
        if value is None and optional:
            value = ""
        elif type(value) is int:
            value = str(value)
        else:
            raise _NotPlainTextError
    try:
        encoded = str.encode(value)
        return _SIZES[len(encoded)] + encoded
    except (UnicodeEncodeError, IndexError):  # a lone surrogate; a very long text
        raise _NotPlainTextError from None


def _key(value: Any) -> bytes:
    """A text field's UTF-8 bytes (`records.record_key`)."""
    if type(value) is str:
        return str.encode(value)
    return str(value).encode() if type(value) is int else b""


def _text_parts(text: str) -> tuple[bytes, bytes]:
    encoded = text.encode()
    return zigzag_varint(len(encoded)), encoded
