"""Stored rows -> the bills GetBill serves.

Rendering is most of a page's CPU in the simulator (1000 dicts of 20 fields and their time
texts), and the server answers one request at a time, so a page's rows are first copied out of
the store's columns (`PageRows`: one slice per column for a page of consecutive records) and
then rendered in one pass over the zipped columns, instead of indexing every column per bill.
Poisoned bills are rare: the common path pays one test of the SHAPE column per bill.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cdr_connector.simulator import generator as g
from cdr_connector.simulator.localtime import LocalTime
from cdr_connector.simulator.poison import Bill, poison

FIRST_ID = 1  # a record's id is its position plus one
RAW = 255  # the SHAPE of an injected bill
DIRECTIONS = {g.CALLIN: "callin", g.CALLOUT: "callout"}  # stored code -> served text


@dataclass(frozen=True)
class PageRows:
    """One page's rows copied out of the store: `columns[c][i]` is column `c` of the record
    at `positions[i]`, and `raw` holds the injected bills among them by position."""

    positions: array[int]
    columns: tuple[array[int], ...]
    raw: dict[int, Bill]


class BillRenderer:
    """Turns rows into bills as GetBill serves them: the hot path of every page, hence one pass
    over the zipped columns, with everything bound to locals."""

    def __init__(self, strings: Sequence[str], local_time: LocalTime, download_ip: str) -> None:
        self._strings = strings
        self._local_time = local_time
        self._download_ip = download_ip

    def render(self, rows: PageRows, poisoner: Callable[[Bill, int], None] = poison) -> list[Bill]:
        """The bills of `rows`, each poisoned row malformed by `poisoner` (`poison` as GetBill
        serves it, `poison_listed` as `/admin/records` shows it)."""
        strings, ip = self._strings, self._download_ip
        fmt, stamp = self._local_time.format, self._local_time.stamp
        bills: list[Bill] = []
        for (position, start, duration, billsec, ext_code, dest, display, direction, method,
             userid, memberid, chengshudu, customuuid, hangupdirection, hangupcause, userkey,
             shape) in zip(rows.positions, *rows.columns, strict=True):  # fmt: skip
            if shape == RAW:
                bills.append(rows.raw[position])
                continue
            end = start + duration
            ext = strings[ext_code]
            bill: Bill = {
                "id": position + FIRST_ID,
                "extnumber": ext,
                "destnumber": strings[dest],
                "displaynumber": strings[display],
                "starttime": fmt(start),
                "answertime": fmt(end - billsec) if billsec else None,
                "endtime": fmt(end),
                "duration": duration,
                "billsec": billsec,
                "direction": DIRECTIONS[direction],
                "callmethod": method,
                "userid": strings[userid],
                "memberid": strings[memberid],
                "chengshudu": strings[chengshudu],
                "customuuid": strings[customuuid],
                "recordfilename": _recordfilename(position, stamp(start), ext) if billsec else "",
                "downloadip": ip if billsec else "",
                "hangupdirection": hangupdirection,
                "hangupcause": hangupcause,
                "userkey": strings[userkey],
            }
            if shape:
                poisoner(bill, shape)
            bills.append(bill)
        return bills


def _recordfilename(position: int, stamp: str, ext: str) -> str:
    return f"{stamp[:8]}/{stamp}-{ext or 'ivr'}-{position + FIRST_ID}.wav"
