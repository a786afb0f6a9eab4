"""A bill as the vendor API gives it -> a normalised record matching `schemas/cdr_record.avsc`.

What a bill's fields may hold is defined in `bill` (ids, integers, texts, the bounds of a
believable call); `normalise` applies those rules and turns a bill into exactly one shape, or
raises `RecordError(stage="normalise", field=...)` saying which field is wrong and how. Here:

- String fields: `null` or a missing key is "" only for the fields the API documents as
  possibly empty (`extnumber`, `recordfilename`, `downloadip`, the four custom fields,
  `userkey`); for the other required fields it is an error.
- Times are the PBX's local wall clock, strictly `yyyy-mm-dd hh:mm:ss`, read in
  `RecordContext.zone` and stored as UTC epoch milliseconds. `answertime` is null when the
  bill says `null`, "" or "0000-00-00 00:00:00" (an unanswered call).
- Daylight saving time follows PEP 495 with `fold=0`: a local time in the repeated hour when
  clocks go back is read as its first occurrence, and a local time skipped when clocks go
  forward is read with the offset in force before the change (New York's 02:30 on the spring
  change day becomes 07:30Z). One exception keeps real calls out of the dead-letter topic: an
  `endtime` or `answertime` that would then come before `starttime` is read as the second
  occurrence, which is right for a call that crosses the change.
- `duration` is not compared with `endtime - starttime`: the vendor does not define it
  precisely enough.
- Fields `bill.KNOWN_FIELDS` does not name are kept in `extra_fields`, JSON-encoded, so that a
  schema update can promote them without losing data.

This runs once per record on the connector's hot path, hence the type checks by `type(x) is`
before the general cases, and the time parsing by slicing with an hourly cache instead of
`datetime.strptime`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from zoneinfo import ZoneInfo

from cdr_connector import bill as b
from cdr_connector.errors import RecordError

STAGE: Final = b.STAGE
CONNECTOR_FIELDS: Final = ("extra_fields", "source", "fetched_at", "pbx_timezone", "fetch_mode")
"""The schema's fields that the connector fills, after the vendor's (`bill.KNOWN_FIELDS`)."""


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
    the rules are in `bill` and in this module's docstring.
    """
    if type(bill) is not dict:  # checked out of line: nearly every bill is a dict
        _require_mapping(bill)
    clock = b.clock_for(context.zone)
    start = b.required_time(bill, "starttime", clock)
    end = b.required_time(bill, "endtime", clock)
    if end < start:
        end = _reread_after(bill, "endtime", clock, start)
    answer = b.optional_time(bill, "answertime", clock)
    if answer is not None and not start <= answer <= end:
        answer = _reread_between(bill, "answertime", clock, start, end)
    record_id = b.record_id(bill)
    duration = b.integer(bill, "duration", 0, b.INT_MAX)
    billsec = b.integer(bill, "billsec", 0, b.INT_MAX)
    callmethod = b.integer(bill, "callmethod", b.INT_MIN, b.INT_MAX)
    hangupdirection = b.integer(bill, "hangupdirection", b.INT_MIN, b.INT_MAX)
    hangupcause = b.integer(bill, "hangupcause", b.INT_MIN, b.INT_MAX)
    fetched_at = context.fetched_at_ms
    if not b.sound_call(
        record_id, start, answer, end, duration, billsec, callmethod, hangupdirection,
        hangupcause, fetched_at,
    ):  # fmt: skip
        raise b.call_problem(
            bill, start_ms=start, end_ms=end, duration=duration, billsec=billsec,
            fetched_at_ms=fetched_at,
        )  # fmt: skip
    return {
        "id": record_id,
        "extnumber": b.optional_text(bill, "extnumber"),
        "destnumber": b.required_text(bill, "destnumber"),
        "displaynumber": b.required_text(bill, "displaynumber"),
        "starttime": start,
        "answertime": answer,
        "endtime": end,
        "duration": duration,
        "billsec": billsec,
        "direction": b.required_text(bill, "direction"),
        "callmethod": callmethod,
        "userid": b.optional_text(bill, "userid"),
        "memberid": b.optional_text(bill, "memberid"),
        "chengshudu": b.optional_text(bill, "chengshudu"),
        "customuuid": b.optional_text(bill, "customuuid"),
        "recordfilename": b.optional_text(bill, "recordfilename"),
        "downloadip": b.optional_text(bill, "downloadip"),
        "hangupdirection": hangupdirection,
        "hangupcause": hangupcause,
        "userkey": b.optional_text(bill, "userkey"),
        "extra_fields": {} if b.KNOWN_FIELDS.issuperset(bill) else b.unknown_fields(bill),
        "source": context.source,
        "fetched_at": fetched_at,
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


def _require_mapping(bill: object) -> None:
    """Raise the parse or normalise error of a bill that is not a JSON object."""
    if isinstance(bill, b.UnreadableBill):
        raise RecordError(f"the bill is not readable JSON ({bill.reason})", stage="parse")
    if not isinstance(bill, Mapping):
        raise RecordError(
            f"a bill must be a JSON object, not {b.json_type(bill)}: {b.show(bill)}", stage=STAGE
        )


def _reread_after(bill: Mapping[str, Any], field: str, clock: b.LocalClock, start: int) -> int:
    """`field`'s second reading, for a call that ended in the repeated hour after clocks went
    back; raises if the time is before the start either way."""
    moment = clock.to_utc_ms(bill[field], fold=1)
    if moment < start:
        raise RecordError(
            f"field {field!r}: {b.show(bill[field])} is before starttime "
            f"{b.show(bill['starttime'])}",
            stage=STAGE,
            field=field,
        )
    return moment


def _reread_between(
    bill: Mapping[str, Any], field: str, clock: b.LocalClock, start: int, end: int
) -> int:
    moment = clock.to_utc_ms(bill[field], fold=1)
    if not start <= moment <= end:
        raise RecordError(
            f"field {field!r}: {b.show(bill[field])} is not between starttime "
            f"{b.show(bill['starttime'])} and endtime {b.show(bill['endtime'])}",
            stage=STAGE,
            field=field,
        )
    return moment
