"""The record store's block index: per block of 1024 records, the earliest and latest start
time, how many records are unqueried and how many are injected raw bills.

From these summaries alone a block is found to be outside a query's window (skipped), inside
it (counted without being read), or in between (the store scans it); see store.py for why.
The index knows no record's fields, only what the store tells it as records arrive and are
marked.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from dataclasses import dataclass

BLOCK_BITS = 10
BLOCK = 1 << BLOCK_BITS

OUTSIDE, PARTLY, INSIDE = range(3)


@dataclass(frozen=True, slots=True)
class Window:
    """What the summaries can decide on: the query's start-time range (unix seconds, both
    inclusive) and syncflag, whether filters on other fields apply (then no block can be
    counted unread), and whether those filters exclude every generated record."""

    start: int
    end: int
    syncflag: int
    filtered: bool
    impossible: bool


class BlockIndex:
    def __init__(self) -> None:
        self._records = 0
        self._min: array[int] = array("q")
        self._max: array[int] = array("q")
        self._unqueried: array[int] = array("i")
        self._raw: array[int] = array("i")
        self._per_block = (self._min, self._max, self._unqueried, self._raw)
        # No block before this one has an unqueried record.
        self._first_open = 0

    def __len__(self) -> int:
        return len(self._min)

    def add(self, starts: array[int], low: int, high: int) -> None:
        """Records at positions low..high-1 arrived, unqueried; `starts` is the whole start
        column."""
        for block in range(low >> BLOCK_BITS, ((high - 1) >> BLOCK_BITS) + 1):
            if block == len(self._min):
                for per_block in self._per_block:
                    per_block.append(0)
            begin, end = block << BLOCK_BITS, min(high, (block + 1) << BLOCK_BITS)
            segment = starts[begin:end]
            self._min[block] = min(segment)
            self._max[block] = max(segment)
            self._unqueried[block] += end - max(begin, low)
        self._records = high
        # New records may land in a block that was fully queried and already passed over.
        self._first_open = min(self._first_open, low >> BLOCK_BITS)

    def add_raw(self, position: int) -> None:
        """The record at `position` is an injected bill, matched only by a scan."""
        self._raw[position >> BLOCK_BITS] += 1

    def note_queried(self, positions: Iterable[int]) -> None:
        """Records newly marked as queried (each one once)."""
        unqueried = self._unqueried
        for position in positions:
            unqueried[position >> BLOCK_BITS] -= 1

    def positions(self, block: int) -> range:
        begin = block << BLOCK_BITS
        return range(begin, min(self._records, begin + BLOCK))

    def has_raw(self, block: int) -> bool:
        return bool(self._raw[block])

    def first_open(self) -> int:
        """The first block that may hold an unqueried record."""
        while self._first_open < len(self._unqueried) and self._unqueried[self._first_open] == 0:
            self._first_open += 1
        return self._first_open

    def count(self, block: int, syncflag: int) -> int:
        """The block's records that `syncflag` admits, before any other filter."""
        if syncflag == 1:
            return self._unqueried[block]
        size = min(BLOCK, self._records - (block << BLOCK_BITS))
        if syncflag == 2:
            return size - self._unqueried[block]
        return size

    def coverage(self, block: int, window: Window) -> int:
        """OUTSIDE, INSIDE (every record `syncflag` admits matches), or PARTLY (scan it)."""
        if self._raw[block]:
            return PARTLY
        if window.impossible:
            return OUTSIDE
        low, high = self._min[block], self._max[block]
        if high < window.start or low > window.end:
            return OUTSIDE
        if window.start <= low and high <= window.end and not window.filtered:
            return INSIDE
        return PARTLY

    def tally_from(self, first: int, window: Window) -> tuple[int, list[int]]:
        """The matches counted from the summaries of the blocks from `first` on, and the
        blocks whose matches only a scan can count. One pass over the per-block arrays: this
        is the part of every page past the page itself."""
        low, high, syncflag = window.start, window.end, window.syncflag
        counted = 0
        to_scan: list[int] = []
        per_block = zip(*(column[first:] for column in self._per_block), strict=True)
        for block, (least, most, unqueried, raw) in enumerate(per_block, first):
            if syncflag == 1 and not unqueried:
                continue
            if raw:
                to_scan.append(block)
            elif window.impossible or most < low or least > high:
                continue
            elif low <= least and most <= high and not window.filtered:
                counted += unqueried if syncflag == 1 else self.count(block, syncflag)
            else:
                to_scan.append(block)
        return counted, to_scan
