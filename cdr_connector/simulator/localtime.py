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
    of every page (three times per bill), so offsets and dates are cached."""

    def __init__(self, zone: zoneinfo.ZoneInfo) -> None:
        self.zone = zone
        self._offsets: dict[int, int] = {}
        self._dates: dict[int, str] = {}

    def format(self, unix: int) -> str:
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


_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
# "hh:mm:ss" of every second of a day (5 MB): one index instead of three divisions per time.
_CLOCK_FACES = tuple(
    f"{hour:02d}:{minute:02d}:{second:02d}"
    for hour in range(24)
    for minute in range(60)
    for second in range(60)
)
