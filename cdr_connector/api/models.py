"""What goes into a GetBill request and what comes back, independent of HTTP.

Times: a `BillQuery` holds timezone-aware datetimes only. The vendor filters on the dial time
in the PBX's local time zone, and a naive datetime cannot say whether it already is PBX time or
the connector host's time (a silent eight-hour shift in the wrong case). `as_form` converts
both ends to the PBX zone it is given and formats them as the vendor expects.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, Literal

from cdr_connector.bill import integer_value
from cdr_connector.config import Filters
from cdr_connector.errors import ApiResponseError
from cdr_connector.redaction import Redactor

SyncFlag = Literal[1, 2, 3]
"""1: records not returned before (the server marks what it returns); 2: records already
returned; 3: all records."""

PBX_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
MAX_PAGE_SIZE = 1000
_SYNC_FLAGS = (1, 2, 3)
# Server values quoted in error messages are cut to this length.
_QUOTE_LIMIT = 60
_NO_SECRETS = Redactor()


@dataclass(frozen=True, slots=True)
class BillQuery:
    """One page of one GetBill listing. `page` counts from 1; `page_size` is 1..1000."""

    start: datetime
    end: datetime
    syncflag: SyncFlag
    page: int
    page_size: int
    filters: Filters

    def __post_init__(self) -> None:
        for name, moment in (("start", self.start), ("end", self.end)):
            if moment.tzinfo is None or moment.utcoffset() is None:
                raise ValueError(f"{name} must be timezone-aware, got naive {moment.isoformat()}")
        if self.end < self.start:
            raise ValueError(f"end {self.end.isoformat()} is before start {self.start.isoformat()}")
        if self.syncflag not in _SYNC_FLAGS:
            raise ValueError(f"syncflag must be 1, 2 or 3, got {self.syncflag!r}")
        if self.page < 1:
            raise ValueError(f"page counts from 1, got {self.page}")
        if not 1 <= self.page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1..{MAX_PAGE_SIZE}, got {self.page_size}")

    def as_form(self, zone: tzinfo) -> dict[str, str]:
        """The GetBill form fields of this query, with times in the PBX zone `zone`.

        `service` and `token` are left to the client: the token is a secret and has no place in
        a value that may be logged or compared.
        """
        return {
            "starttime": pbx_time(self.start, zone),
            "endtime": pbx_time(self.end, zone),
            "syncflag": str(self.syncflag),
            "currentpage": str(self.page),
            "itemsperpage": str(self.page_size),
            **self.filters.as_form(),
        }


def pbx_time(moment: datetime, zone: tzinfo) -> str:
    """`moment` as the PBX's wall-clock time, `yyyy-mm-dd hh:mm:ss`."""
    return moment.astimezone(zone).strftime(PBX_TIME_FORMAT)


@dataclass(frozen=True, slots=True)
class BillPage:
    """One GetBill answer. `bills` are passed on exactly as the server sent them: a bill that
    is not an object is not an error here, the records stage dead-letters it. `raw_size` is
    the size of the HTTP body in bytes (0 when unknown)."""

    totalitems: int
    currentpage: int
    itemsperpage: int
    bills: list[Any]
    raw_size: int = 0

    @classmethod
    def from_result(
        cls, result: Any, query: BillQuery, raw_size: int = 0, *, redact: Redactor = _NO_SECRETS
    ) -> BillPage:
        """Validate `data.result` of a GetBill answer; ApiResponseError says what is wrong,
        quoting the server's value cut short and passed through `redact` (the client's).

        Required: an object with a non-negative integer `totalitems` (a numeric string or an
        integral float is accepted, as PHP servers send either) and a `bills` list; `bills`
        may be null or absent only when `totalitems` is 0. `currentpage` and `itemsperpage`
        only echo the request, so when they are missing or unreadable the query's values
        stand in.
        """
        if not isinstance(result, dict):
            raise ApiResponseError(
                f"GetBill answer: data.result must be an object, got {_type_name(result)}"
            )
        total = int_like(result.get("totalitems"))
        if total is None or total < 0:
            raise ApiResponseError(
                "GetBill answer: result.totalitems must be a non-negative integer, got "
                f"{_quote(result.get('totalitems'), redact)}"
            )
        bills = result.get("bills")
        if bills is None and total == 0:
            bills = []
        if not isinstance(bills, list):
            raise ApiResponseError(
                f"GetBill answer: result.bills must be a list (totalitems is {total}), "
                f"got {_type_name(bills)}"
            )
        page = int_like(result.get("currentpage"))
        per_page = int_like(result.get("itemsperpage"))
        return cls(
            totalitems=total,
            currentpage=query.page if page is None else page,
            itemsperpage=query.page_size if per_page is None else per_page,
            bills=bills,
            raw_size=raw_size,
        )


def int_like(value: Any) -> int | None:
    """An integer of the envelope (`ret`, `data.status`, `totalitems`, ...) as the one reader of
    integers, `bill.integer_value`, reads it; surrounding spaces are allowed, as PHP servers
    sometimes pad numbers written as text. None when it is not one."""
    return integer_value(value.strip() if isinstance(value, str) else value)


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _quote(value: Any, redact: Redactor) -> str:
    """`value` as Python writes it, cut first and redacted after (a secret the cut went
    through included)."""
    if value is None:
        return "nothing"
    return redact.cut(repr(value), _QUOTE_LIMIT)
