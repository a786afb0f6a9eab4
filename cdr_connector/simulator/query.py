"""GetBill's parameters, validated as strictly as the contract allows: anything malformed is
a `BadRequestError` naming the parameter, never an exception further in."""

from __future__ import annotations

import re
from collections.abc import Mapping

from cdr_connector.simulator.envelope import BadRequestError
from cdr_connector.simulator.localtime import LocalTime
from cdr_connector.simulator.store import BillQuery

_INTEGER = re.compile(r"-?[0-9]{1,18}")
MAX_PER_PAGE = 1000
# Defaults from getbill.md; note that an absent callmethod means 3 (API calls only).
_DEFAULTS = {"syncflag": 1, "direction": 3, "callmethod": 3, "currentpage": 1, "itemsperpage": 10}
_CHOICES = {"syncflag": (1, 3), "direction": (1, 3), "callmethod": (0, 6)}


def require(form: Mapping[str, str], name: str) -> str:
    value = form.get(name)
    if not value:
        raise BadRequestError(f"illegal request: {name} is required")
    return value


def integer(form: Mapping[str, str], name: str, low: int, high: int | None = None) -> int:
    """An int parameter in low..high (high None: no upper bound); absent means its default."""
    text = form.get(name)
    if text is None:
        return _DEFAULTS[name]
    if not _INTEGER.fullmatch(text):
        raise BadRequestError(f"illegal request: {name} must be an integer, got {text!r}")
    value = int(text)
    if value < low or (high is not None and value > high):
        bounds = f"{low}..{high}" if high is not None else f">= {low}"
        raise BadRequestError(f"illegal request: {name} must be {bounds}, got {value}")
    return value


def local_time(form: Mapping[str, str], name: str, clock: LocalTime) -> int:
    text = require(form, name)
    parsed = clock.parse(text)
    if parsed is None:
        raise BadRequestError(f"illegal request: {name} must be yyyy-mm-dd hh:mm:ss, got {text!r}")
    return parsed


def bill_query(form: Mapping[str, str], clock: LocalTime) -> BillQuery:
    start = local_time(form, "starttime", clock)
    end = local_time(form, "endtime", clock)
    if end < start:
        raise BadRequestError("illegal request: endtime must not be before starttime")
    choices = {name: integer(form, name, *bounds) for name, bounds in _CHOICES.items()}
    extnumbers = frozenset(ext.strip() for ext in form.get("extnumber", "").split(","))
    return BillQuery(
        start=start,
        end=end,
        syncflag=choices["syncflag"],
        direction=choices["direction"],
        callmethod=choices["callmethod"],
        page=integer(form, "currentpage", 1),
        per_page=integer(form, "itemsperpage", 1, MAX_PER_PAGE),
        extnumbers=extnumbers - {""},
        destnumber=form.get("destnumber", ""),
        userid=form.get("userid", ""),
        memberid=form.get("memberid", ""),
        chengshudu=form.get("chengshudu", ""),
        customuuid=form.get("customuuid", ""),
    )
