"""Ways a generated bill is served malformed (the `poison_rate` fault).

Each kind turns a well-formed rendered bill into one a strict client must reject (and
dead-letter) rather than store or crash on. The id stays recognisable in every kind, so a test
can tell which record came back malformed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Bill = dict[str, Any]


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


POISON_KINDS: tuple[Callable[[Bill], None], ...] = (
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
)


def poison(bill: Bill, kind: int) -> None:
    """Malform `bill` in place the `kind`-th way (1-based, as stored in a row's SHAPE)."""
    POISON_KINDS[kind - 1](bill)
