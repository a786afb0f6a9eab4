"""Every visible record, its queried mark, and the GetBill selection over them.

Records are kept in columns (`array`s of ints, strings as vocabulary codes) in id order, with
a `bytearray` of queried marks: a million records take about 70 MB. A record's id is its
position plus one, so ids increase with visibility and never leave gaps.

Selection must not scan the whole store for each page. The store is cut into blocks of 1024
records; each block knows the earliest and latest start time among its records and how many
of them are unqueried (the `BlockIndex`, blocks.py). A block entirely outside the request's
window is skipped, a block entirely inside it (with no other filters) is counted without being
read, and only the blocks that straddle the window's edges or hold the requested page are
scanned. With no filters and a window covering everything, a `syncflag=1` page costs
O(page + blocks) instead of O(records). Other filters (extnumber, destnumber, ...) scan every
block in the window, about 0.15 s per million records: they are rare.

Poisoned rows keep their SHAPE in a column and are malformed when rendered (poison.py); the
positions of the rare rows that change their whole page (`inflated_totalitems`) are also kept
in a set, so that a page without them pays one emptiness test.

Injected raw bills (`inject`) take the next id and are served exactly as given; they are
filtered by their `starttime` when it parses, and by each other field only when that field
has a comparable value, so malformed bills are included rather than silently hidden.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from cdr_connector.simulator import generator as g
from cdr_connector.simulator.blocks import INSIDE, OUTSIDE, BlockIndex, Window
from cdr_connector.simulator.localtime import LocalTime
from cdr_connector.simulator.poison import (
    INFLATED_TOTALITEMS_SHAPE,
    Bill,
    kind_name,
    poison_listed,
)
from cdr_connector.simulator.render import DIRECTIONS, FIRST_ID, RAW, BillRenderer, PageRows

_CHUNK = 65_536  # rows per bulk append, to bound the memory of a large preload
_RECORDING = re.compile(r"[0-9]{8}/[0-9]{14}-[^/]+-([0-9]{1,18})\.wav")
_DIRECTION_CODES = {name: code for code, name in DIRECTIONS.items()}


@dataclass(frozen=True)
class BillQuery:
    """A validated GetBill request. `start`/`end` are unix seconds, both inclusive; an empty
    string or set means "all"."""

    start: int
    end: int
    syncflag: int = 3
    direction: int = 3
    callmethod: int = 0
    page: int = 1
    per_page: int = 10
    extnumbers: frozenset[str] = frozenset()
    destnumber: str = ""
    userid: str = ""
    memberid: str = ""
    chengshudu: str = ""
    customuuid: str = ""

    def text_filters(self) -> dict[int, str]:
        """The exact-match text filters that are set, by Row field."""
        wanted = {
            g.DEST: self.destnumber,
            g.USERID: self.userid,
            g.MEMBERID: self.memberid,
            g.CHENGSHUDU: self.chengshudu,
            g.CUSTOMUUID: self.customuuid,
        }
        return {column: text for column, text in wanted.items() if text}


_TEXT_FIELDS = {
    g.DEST: "destnumber",
    g.USERID: "userid",
    g.MEMBERID: "memberid",
    g.CHENGSHUDU: "chengshudu",
    g.CUSTOMUUID: "customuuid",
}


@dataclass(frozen=True)
class Selection:
    total: int  # records matching the whole query, before any marking
    positions: list[int]  # the requested page, in id order


@dataclass
class _Raw:
    bill: Bill
    start: int | None  # None: no parseable starttime, so inside every window


@dataclass
class _Matcher:
    """The part of a query that depends on stored columns, compiled once per request."""

    query: BillQuery
    checks: list[tuple[array[int], int]] = field(default_factory=list)
    extensions: frozenset[int] | None = None
    # A filter names a text no generated record has: only raw bills can match.
    impossible: bool = False

    @property
    def filtered(self) -> bool:
        return bool(self.checks) or self.extensions is not None or self.impossible

    @property
    def window(self) -> Window:
        query = self.query
        return Window(query.start, query.end, query.syncflag, self.filtered, self.impossible)


class RecordStore:
    def __init__(self, pools: g.Pools, local_time: LocalTime, download_ip: str) -> None:
        self._pools = pools
        self._local_time = local_time
        self._renderer = BillRenderer(pools.vocabulary.strings, local_time, download_ip)
        self._columns: list[array[int]] = [array("i") for _ in range(g.ROW_WIDTH)]
        self._columns[g.START] = array("q")
        self._queried = bytearray()
        self._raw: dict[int, _Raw] = {}
        self._raw_recordings: set[str] = set()
        self._unqueried = 0
        self.poisoned = 0  # generated bills served malformed
        self._inflating: set[int] = set()  # positions of `inflated_totalitems` bills
        self._blocks = BlockIndex()

    def __len__(self) -> int:
        return len(self._queried)

    @property
    def unqueried(self) -> int:
        return self._unqueried

    @property
    def queried(self) -> int:
        return len(self) - self._unqueried

    # --- adding records -----------------------------------------------------------------

    def extend(self, rows: Iterable[g.Row]) -> range:
        """Make `rows` visible, in order; returns their ids."""
        first = len(self)
        iterator = iter(rows)
        while chunk := _take(iterator, _CHUNK):
            low = len(self)
            fields = list(zip(*chunk, strict=True))
            for column, values in zip(self._columns, fields, strict=True):
                column.extend(values)
            shapes = fields[g.SHAPE]
            poisoned = len(shapes) - shapes.count(g.WELL_FORMED) - shapes.count(RAW)
            if poisoned:
                self.poisoned += poisoned
                self._note_inflating(low, shapes)
            self._queried.extend(bytes(len(chunk)))
            self._unqueried += len(chunk)
            self._blocks.add(self._columns[g.START], low, len(self))
        return range(first + FIRST_ID, len(self) + FIRST_ID)

    def inject(self, bill: Bill) -> int:
        """Make a raw bill visible as given; returns the id it takes. A bill without an `id`
        key is served with that id; one with an `id` key is served untouched."""
        position = len(self)
        starttime = bill.get("starttime")
        start = self._local_time.parse(starttime) if isinstance(starttime, str) else None
        served = bill if "id" in bill else {"id": position + FIRST_ID, **bill}
        self._raw[position] = _Raw(served, start)
        recording = bill.get("recordfilename")
        if isinstance(recording, str) and recording:
            self._raw_recordings.add(recording)
        placeholder = [0] * g.ROW_WIDTH
        placeholder[g.START] = start or 0
        placeholder[g.SHAPE] = RAW
        self.extend([tuple(placeholder)])
        self._blocks.add_raw(position)
        return position + FIRST_ID

    def _note_inflating(self, low: int, shapes: Sequence[int]) -> None:
        wanted = INFLATED_TOTALITEMS_SHAPE
        if wanted in shapes:
            self._inflating.update(low + i for i, shape in enumerate(shapes) if shape == wanted)

    # --- selecting and marking ----------------------------------------------------------

    def select(self, query: BillQuery) -> Selection:
        """The records matching `query`: their number and the requested page."""
        matcher = self._matcher(query)
        skip = (query.page - 1) * query.per_page
        total = 0
        page: list[int] = []
        window = matcher.window
        first = self._blocks.first_open() if query.syncflag == 1 else 0
        rest = len(self._blocks)  # the first block past the page
        for block in range(first, rest):
            if not skip and len(page) == query.per_page:
                rest = block
                break
            count = self._blocks.count(block, query.syncflag)
            if count == 0:
                continue
            coverage = self._blocks.coverage(block, window)
            if coverage == OUTSIDE:
                continue
            if coverage == INSIDE and skip >= count:
                total += count
                skip -= count
                continue
            matches = self._scan(block, matcher)
            total += len(matches)
            if skip >= len(matches):
                skip -= len(matches)
                continue
            page.extend(matches[skip : skip + query.per_page - len(page)])
            skip = 0
        return Selection(total + self._count_from(rest, matcher), page)

    def _count_from(self, first: int, matcher: _Matcher) -> int:
        """How many records of the blocks from `first` on match: counted from the block
        summaries where they suffice, by a scan elsewhere."""
        counted, to_scan = self._blocks.tally_from(first, matcher.window)
        return counted + sum(len(self._scan(block, matcher)) for block in to_scan)

    def mark(self, positions: Iterable[int]) -> int:
        """Mark records as queried; returns how many were not yet."""
        queried = self._queried
        newly: list[int] = []
        for position in positions:
            if not queried[position]:  # a position listed twice is marked once
                queried[position] = 1
                newly.append(position)
        self._blocks.note_queried(newly)
        self._unqueried -= len(newly)
        return len(newly)

    def take_unqueried(self, limit: int) -> list[int]:
        """Mark the first `limit` unqueried records as queried, as another reader would."""
        taken: list[int] = []
        block = self._blocks.first_open()
        while len(taken) < limit and block < len(self._blocks):
            for position in self._blocks.positions(block):
                if len(taken) == limit:
                    break
                if not self._queried[position]:
                    taken.append(position)
            block += 1
        self.mark(taken)
        return taken

    def _scan(self, block: int, matcher: _Matcher) -> list[int]:
        """The block's matching positions, in order: one list comprehension per condition,
        several times faster than testing each record in turn."""
        query = matcher.query
        candidates: Sequence[int] = self._blocks.positions(block)
        wanted = {1: 0, 2: 1}.get(query.syncflag)
        if wanted is not None:
            queried = self._queried
            candidates = [p for p in candidates if queried[p] == wanted]
        raw: list[int] = []
        if self._blocks.has_raw(block):
            shapes, bills = self._columns[g.SHAPE], self._raw
            raw = [p for p in candidates if shapes[p] == RAW and _raw_matches(bills[p], query)]
            candidates = [p for p in candidates if shapes[p] != RAW]
        if matcher.impossible:
            return raw
        starts, low, high = self._columns[g.START], query.start, query.end
        candidates = [p for p in candidates if low <= starts[p] <= high]
        if matcher.extensions is not None:
            extensions, ext_column = matcher.extensions, self._columns[g.EXT]
            candidates = [p for p in candidates if ext_column[p] in extensions]
        for column, code in matcher.checks:
            candidates = [p for p in candidates if column[p] == code]
        return sorted(raw + candidates) if raw else candidates

    def _matcher(self, query: BillQuery) -> _Matcher:
        vocabulary = self._pools.vocabulary
        matcher = _Matcher(query)
        if query.direction != 3:
            # The filter's numbers (1 callin, 2 callout) are the stored ones.
            matcher.checks.append((self._columns[g.DIRECTION], query.direction))
        if query.callmethod:
            matcher.checks.append((self._columns[g.CALLMETHOD], query.callmethod))
        for column, text in query.text_filters().items():
            code = vocabulary.lookup(text)
            if code is None:
                matcher.impossible = True
            else:
                matcher.checks.append((self._columns[column], code))
        if query.extnumbers:
            codes = {vocabulary.lookup(ext) for ext in query.extnumbers}
            matcher.extensions = frozenset(code for code in codes if code is not None)
            matcher.impossible |= not matcher.extensions
        return matcher

    # --- rendering ----------------------------------------------------------------------

    def rows(self, positions: Sequence[int]) -> PageRows:
        """The records at `positions` (in increasing order, as `select` gives them) copied out
        of the columns. A page of consecutive records (the usual case) is one slice per
        column."""
        columns = self._columns
        if positions and positions[-1] - positions[0] == len(positions) - 1:
            low, high = positions[0], positions[-1] + 1
            copies = tuple(column[low:high] for column in columns)
        else:
            copies = tuple(
                array(column.typecode, [column[p] for p in positions]) for column in columns
            )
        shapes = copies[g.SHAPE]
        raw = {
            p: self._raw[p].bill for p, shape in zip(positions, shapes, strict=True) if shape == RAW
        }
        return PageRows(array("q", positions), copies, raw)

    def render(self, positions: Sequence[int]) -> list[Bill]:
        """The bills at `positions` (in increasing order) as GetBill serves them."""
        return self._renderer.render(self.rows(positions))

    def inflates(self, positions: Iterable[int]) -> bool:
        """Whether a page of these records reports an inflated `totalitems` (poison.py)."""
        return bool(self._inflating) and not self._inflating.isdisjoint(positions)

    def listing(self, after_id: int, limit: int) -> list[Bill]:
        """Up to `limit` records with ids above `after_id`, in id order, as `/admin/records`
        shows them: as GetBill serves them (raw-bytes poison as it was before its bytes were
        broken, see poison.py), each with `poison`, its kind's name or None (a well-formed or
        an injected bill), and each poisoned one with `poison_id`, the id it was made with,
        since its served `id` may be destroyed. Fresh dicts: an injected bill is the stored
        object itself, which must not gain these keys."""
        first = max(0, after_id + 1 - FIRST_ID)
        positions = range(first, min(len(self), first + limit))
        rows = self.rows(positions)
        bills = self._renderer.render(rows, poison_listed)
        shapes = rows.columns[g.SHAPE]
        listed: list[Bill] = []
        for position, shape, bill in zip(positions, shapes, bills, strict=True):
            kind = kind_name(shape)
            if kind is None:
                listed.append({**bill, "poison": None})
            else:
                listed.append({**bill, "poison": kind, "poison_id": position + FIRST_ID})
        return listed

    def has_recording(self, filename: str) -> bool:
        if filename in self._raw_recordings:
            return True
        found = _RECORDING.fullmatch(filename)
        if found is None:
            return False
        position = int(found[1]) - FIRST_ID
        if not 0 <= position < len(self) or self._columns[g.SHAPE][position] == RAW:
            return False
        if not self._columns[g.BILLSEC][position]:
            return False
        return bool(self.render([position])[0]["recordfilename"] == filename)


def _take(iterator: Iterator[g.Row], count: int) -> list[g.Row]:
    chunk = []
    for row in iterator:
        chunk.append(row)
        if len(chunk) == count:
            break
    return chunk


def _raw_matches(raw: _Raw, query: BillQuery) -> bool:
    """Lenient filtering of an injected bill: a filter applies only where the bill has a
    value it can be compared with."""
    bill = raw.bill
    if raw.start is not None and not query.start <= raw.start <= query.end:
        return False
    direction = bill.get("direction")
    if (
        query.direction != 3
        and isinstance(direction, str)
        and _DIRECTION_CODES.get(direction, query.direction) != query.direction
    ):
        return False
    method = bill.get("callmethod")
    if query.callmethod and _is_int(method) and method != query.callmethod:
        return False
    ext = bill.get("extnumber")
    if query.extnumbers and isinstance(ext, str) and ext not in query.extnumbers:
        return False
    for column, text in query.text_filters().items():
        value = bill.get(_TEXT_FIELDS[column])
        if isinstance(value, str) and value != text:
            return False
    return True


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
