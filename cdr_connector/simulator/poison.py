"""Ways a generated bill is served malformed (the `poison_rate` fault, or `/admin/poison`).

Each kind turns a well-formed rendered bill into one a strict client must reject (and
dead-letter) rather than store or crash on, or into one that tempts a lax client into a wrong
record. A kind's number is its SHAPE in the store (1-based position in `POISON_KINDS`), so new
kinds only ever go at the end; its name (`KIND_NAMES`) is the function's name without the
leading underscore and is what tests and `/admin/` speak.

The bill stays recognisable in every kind: either its `id` is intact, or (the bad-id kinds)
`memberid` holds `poison-id-<id>`, the one place a dead letter without a usable id can carry
the id to a test.

The raw-bytes kinds put an `orjson.Fragment` into one field: `orjson.dumps` splices its bytes
into the page unchecked, so the page is a valid envelope except inside that one bill, whose
`id` member (first, as always) stays intact. Those bytes cannot be shown by `/admin/records`,
which must stay JSON, so the listing renders these kinds as the bill was before its bytes were
broken (`poison_listed`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

Bill = dict[str, Any]
Poison = Callable[[Bill], None]

# What `totalitems` a page containing an `inflated_totalitems` bill reports.
INFLATED_TOTALITEMS = 10**12
# The length of a `huge` bill's `padding` text: far past any sane field (the connector's bound
# is 16 KiB a field) while the bill itself still fits a Kafka message.
HUGE_BILL_BYTES = 300_000
_PADDING = "x" * HUGE_BILL_BYTES  # built once: a huge bill costs no more than any other
FAR_FUTURE = "2099-12-31 23:59:59"
BAD_ID_MARK = "poison-id-"
# Deeper than orjson's (1024) and Python's (1000) recursion limits.
NESTING_DEPTH = 1_100
_DEEP = orjson.Fragment(b"[" * NESTING_DEPTH + b"]" * NESTING_DEPTH)
_NAN = orjson.Fragment(b"NaN")
_LONE_SURROGATE = orjson.Fragment(b'"\\udc80"')
_ARABIC_INDIC = str.maketrans("0123456789", "".join(chr(0x660 + d) for d in range(10)))


def _id_as_string(bill: Bill) -> None:
    bill["id"] = str(bill["id"])


def _impossible_starttime(bill: Bill) -> None:
    bill["starttime"] = "2023-02-30 25:61:61"


def _missing_starttime(bill: Bill) -> None:
    del bill["starttime"]


def _other_time_format(bill: Bill) -> None:
    bill["endtime"] = str(bill["endtime"]).replace("-", "/").replace(" ", "T") + "+08:00"


def _duration_not_a_number(bill: Bill) -> None:
    bill["duration"] = f"{bill['duration']}s"


def _negative_billsec(bill: Bill) -> None:
    bill["billsec"] = -5


def _answer_after_end(bill: Bill) -> None:
    bill["answertime"] = "2099-12-31 23:59:59"


def _null_endtime(bill: Bill) -> None:
    bill["endtime"] = None


def _unknown_direction(bill: Bill) -> None:
    bill["direction"] = "sideways"


def _extnumber_as_number(bill: Bill) -> None:
    bill["extnumber"] = 8001


def _unknown_callmethod(bill: Bill) -> None:
    bill["callmethod"] = 99


def _hangupcause_as_text(bill: Bill) -> None:
    bill["hangupcause"] = "NORMAL_CLEARING"


def _nested_userkey(bill: Bill) -> None:
    bill["userkey"] = {"pressed": ["1", "#"]}


# --- bad ids: no usable id is left, so memberid carries it ------------------------------------


def _replace_id(bill: Bill, new_id: Any) -> None:
    bill["memberid"] = f"{BAD_ID_MARK}{bill['id']}"
    bill["id"] = new_id


def _id_twenty_digits(bill: Bill) -> None:
    """Past 2**63-1: overflows a 64-bit id column."""
    _replace_id(bill, "99999999999999999999")


def _id_four_hundred_digits(bill: Bill) -> None:
    """Digits only, so a reader that checks the characters but not the length converts it."""
    _replace_id(bill, "9" * 400)


def _id_negative(bill: Bill) -> None:
    _replace_id(bill, -bill["id"])


def _id_decimal_text(bill: Bill) -> None:
    _replace_id(bill, "12.5")


def _id_null(bill: Bill) -> None:
    _replace_id(bill, None)


def _id_lookalike_digits(bill: Bill) -> None:
    """`int()` reads Arabic-Indic digits: a lax reader takes this for the id of the bill just
    before, a genuine one, and drops that bill as a duplicate."""
    _replace_id(bill, str(bill["id"] - 1).translate(_ARABIC_INDIC))


def _id_float(bill: Bill) -> None:
    _replace_id(bill, float(bill["id"]))


def _id_in_a_list(bill: Bill) -> None:
    _replace_id(bill, [bill["id"]])


# --- raw bytes: this one bill is not valid JSON -----------------------------------------------


def _raw_lone_surrogate(bill: Bill) -> None:
    """An escape of half a UTF-16 pair: no Unicode text has it."""
    bill["userid"] = _LONE_SURROGATE


def _raw_invalid_utf8(bill: Bill) -> None:
    bill["destnumber"] = orjson.Fragment(orjson.dumps(bill["destnumber"])[:-1] + b'\xff"')


def _raw_nan_duration(bill: Bill) -> None:
    bill["duration"] = _NAN


def _raw_deep_userkey(bill: Bill) -> None:
    bill["userkey"] = _DEEP


# --- well-formed but implausible --------------------------------------------------------------


def _inflated_totalitems(bill: Bill) -> None:
    """The bill is left as it is: a page that holds it reports INFLATED_TOTALITEMS (see
    services.get_bill), which a client planning its pages from `totalitems` must survive."""


def _far_future_endtime(bill: Bill) -> None:
    bill["endtime"] = FAR_FUTURE


def _huge(bill: Bill) -> None:
    bill["padding"] = _PADDING


POISON_KINDS: tuple[Poison, ...] = (
    _id_as_string,
    _impossible_starttime,
    _missing_starttime,
    _other_time_format,
    _duration_not_a_number,
    _negative_billsec,
    _answer_after_end,
    _null_endtime,
    _unknown_direction,
    _extnumber_as_number,
    _unknown_callmethod,
    _hangupcause_as_text,
    _nested_userkey,
    _id_twenty_digits,
    _id_four_hundred_digits,
    _id_negative,
    _id_decimal_text,
    _id_null,
    _id_lookalike_digits,
    _id_float,
    _id_in_a_list,
    _raw_lone_surrogate,
    _raw_invalid_utf8,
    _raw_nan_duration,
    _raw_deep_userkey,
    _inflated_totalitems,
    _far_future_endtime,
    _huge,
)
KIND_NAMES: tuple[str, ...] = tuple(kind.__name__.removeprefix("_") for kind in POISON_KINDS)
SHAPES: dict[str, int] = {name: shape for shape, name in enumerate(KIND_NAMES, 1)}
_RAW_BYTES_KINDS = (_raw_lone_surrogate, _raw_invalid_utf8, _raw_nan_duration, _raw_deep_userkey)
RAW_BYTES_SHAPES = frozenset(POISON_KINDS.index(kind) + 1 for kind in _RAW_BYTES_KINDS)
INFLATED_TOTALITEMS_SHAPE = POISON_KINDS.index(_inflated_totalitems) + 1


def poison(bill: Bill, kind: int) -> None:
    """Malform `bill` in place the `kind`-th way (1-based, as stored in a row's SHAPE)."""
    POISON_KINDS[kind - 1](bill)


def poison_listed(bill: Bill, kind: int) -> None:
    """As `poison`, for `/admin/records`: a raw-bytes kind leaves the bill as it was, since
    the listing must stay JSON that any parser reads."""
    if kind not in RAW_BYTES_SHAPES:
        POISON_KINDS[kind - 1](bill)


def kind_name(shape: int) -> str | None:
    """The name of a row's poison kind; None for a well-formed row or an injected bill."""
    return KIND_NAMES[shape - 1] if 1 <= shape <= len(KIND_NAMES) else None
