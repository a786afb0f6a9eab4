"""The PBX's wall-clock format, `yyyy-mm-dd hh:mm:ss` in its own time zone, both ways."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_STRICT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}")
# Every UTC offset in use today is a multiple of 15 minutes and changes only at such a
# boundary, so one offset look-up serves a whole 15-minute slot.
_SLOT = 900


class LocalTime:
    """Converts unix seconds to the PBX's local text and back. Formatting is on the hot path
    of every page (three times per bill, and a page's calls end within minutes of each other),
    so the texts themselves are memoised, and offsets and dates behind them."""

    def __init__(self, zone: zoneinfo.ZoneInfo) -> None:
        self.zone = zone
        self._offsets: dict[int, int] = {}
        self._dates: dict[int, str] = {}
        self._texts: dict[int, str] = {}
        self._stamps: dict[int, str] = {}

    @property
    def memoised(self) -> int:
        """How many texts are memoised now; never more than MEMO_LIMIT per kind."""
        return max(len(self._texts), len(self._stamps))

    def format(self, unix: int) -> str:
        text = self._texts.get(unix)
        if text is None:
            text = _remember(self._texts, unix, self._format(unix))
        return text

    def stamp(self, unix: int) -> str:
        """`yyyymmddhhmmss`, as recording file names carry the call's start."""
        stamp = self._stamps.get(unix)
        if stamp is None:
            text = self.format(unix)
            stamp = _remember(
                self._stamps,
                unix,
                f"{text[:4]}{text[5:7]}{text[8:10]}{text[11:13]}{text[14:16]}{text[17:19]}",
            )
        return stamp

    def _format(self, unix: int) -> str:
        slot = unix // _SLOT
        offset = self._offsets.get(slot)
        if offset is None:
            offset = self._offset(slot)
        day, second = divmod(unix + offset, 86_400)
        date = self._dates.get(day)
        if date is None:
            date = dt.date.fromordinal(_EPOCH_ORDINAL + day).isoformat() + " "
            self._dates[day] = date
        return date + _CLOCK_FACES[second]

    def parse(self, text: str) -> int | None:
        """Unix seconds of a strictly formatted local time, or None if it is not one."""
        if not _STRICT.fullmatch(text):
            return None
        try:
            naive = dt.datetime.strptime(text, TIME_FORMAT)
            return int(naive.replace(tzinfo=self.zone).timestamp())
        except (ValueError, OverflowError):
            return None

    def _offset(self, slot: int) -> int:
        delta = dt.datetime.fromtimestamp(slot * _SLOT, self.zone).utcoffset()
        offset = int(delta.total_seconds()) if delta is not None else 0
        self._offsets[slot] = offset
        return offset


def _remember(memo: dict[int, str], unix: int, text: str) -> str:
    if len(memo) >= MEMO_LIMIT:
        memo.clear()
    memo[unix] = text
    return text


# Seconds memoised per kind of text (about 10 MB at most): a day's worth of distinct seconds
# would be 86,400; live traffic keeps only the last minutes warm.
MEMO_LIMIT = 1 << 17
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
# "hh:mm:ss" of every second of a day (5 MB): one index instead of three divisions per time.
_CLOCK_FACES = tuple(
    f"{hour:02d}:{minute:02d}:{second:02d}"
    for hour in range(24)
    for minute in range(60)
    for second in range(60)
)
