"""What has been committed: the ids of the records already in Kafka, kept compactly.

The state is written to a compacted Kafka topic in the same transaction as the records it
describes, so it can never claim a record that is not in the data topic, nor miss one that is.

Ids are mostly dense integers (the vendor numbers its records as it writes them), so they are
kept as inclusive ranges `[low, high]`; with no GetBill filters a whole day of records is one
range. Each range also remembers the newest dial time among its ids, which lets the state forget
ranges that fell out of the lookback horizon: nothing older can be returned by syncflag=1 or by a
sweep, so nothing older needs de-duplicating.
"""

from __future__ import annotations

import zlib
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson

from cdr_connector.errors import PermanentError

STATE_VERSION = 1
# A message on the state topic must stay well under the broker's default 1 MB limit; each range
# costs about 30 bytes before compression, so this keeps the worst case (every id alone) safe.
DEFAULT_MAX_RANGES = 20_000


@dataclass(slots=True)
class IdRange:
    low: int
    high: int
    newest_start_ms: int


@dataclass(slots=True)
class CommittedIds:
    """A sorted set of disjoint id ranges, with merge on insert."""

    ranges: list[IdRange] = field(default_factory=list)
    max_ranges: int = DEFAULT_MAX_RANGES

    def __contains__(self, record_id: int) -> bool:
        index = bisect_right(self.ranges, record_id, key=_low) - 1
        return index >= 0 and self.ranges[index].high >= record_id

    def __len__(self) -> int:
        return sum(r.high - r.low + 1 for r in self.ranges)

    def add_many(self, ids_with_start: Iterable[tuple[int, int]]) -> None:
        """Add (id, dial time ms) pairs; fastest when ids come sorted."""
        for record_id, start_ms in sorted(ids_with_start):
            self.add(record_id, start_ms)
        self._enforce_bound()

    def add(self, record_id: int, start_ms: int) -> None:
        ranges = self.ranges
        if ranges and ranges[-1].high + 1 == record_id:  # the common case: the next id
            ranges[-1].high = record_id
            ranges[-1].newest_start_ms = max(ranges[-1].newest_start_ms, start_ms)
            return
        index = bisect_right(ranges, record_id, key=_low) - 1
        if index >= 0 and ranges[index].high >= record_id:
            return
        joins_left = index >= 0 and ranges[index].high + 1 == record_id
        right = index + 1
        joins_right = right < len(ranges) and ranges[right].low - 1 == record_id
        if joins_left and joins_right:
            left_range, right_range = ranges[index], ranges.pop(right)
            left_range.high = right_range.high
            left_range.newest_start_ms = max(
                left_range.newest_start_ms, right_range.newest_start_ms, start_ms
            )
        elif joins_left:
            ranges[index].high = record_id
            ranges[index].newest_start_ms = max(ranges[index].newest_start_ms, start_ms)
        elif joins_right:
            ranges[right].low = record_id
            ranges[right].newest_start_ms = max(ranges[right].newest_start_ms, start_ms)
        else:
            ranges.insert(right, IdRange(record_id, record_id, start_ms))

    def forget_before(self, horizon_ms: int) -> int:
        """Drop ranges whose newest dial time is older than the horizon; return how many."""
        kept = [r for r in self.ranges if r.newest_start_ms >= horizon_ms]
        dropped = len(self.ranges) - len(kept)
        self.ranges = kept
        return dropped

    def _enforce_bound(self) -> None:
        excess = len(self.ranges) - self.max_ranges
        if excess > 0:
            # The lowest ids are the oldest records: they are the least likely to come back.
            del self.ranges[:excess]


def _low(id_range: IdRange) -> int:
    return id_range.low


@dataclass(slots=True)
class CheckpointState:
    """Everything the connector must remember across restarts, for one source."""

    source: str
    committed: CommittedIds = field(default_factory=CommittedIds)
    newest_end_ms: int = 0
    committed_total: int = 0
    dead_lettered_total: int = 0

    def encode(self) -> bytes:
        """zlib-compressed JSON: readable with standard tools, small for dense ids."""
        flat: list[int] = []
        for r in self.committed.ranges:
            flat.extend((r.low, r.high, r.newest_start_ms))
        document = {
            "version": STATE_VERSION,
            "source": self.source,
            "ranges": flat,
            "newest_end_ms": self.newest_end_ms,
            "committed_total": self.committed_total,
            "dead_lettered_total": self.dead_lettered_total,
        }
        return zlib.compress(orjson.dumps(document), 6)

    @classmethod
    def decode(cls, payload: bytes, *, max_ranges: int = DEFAULT_MAX_RANGES) -> CheckpointState:
        try:
            document = orjson.loads(zlib.decompress(payload))
            if document["version"] != STATE_VERSION:
                raise ValueError(f"unsupported state version {document['version']}")
            flat = document["ranges"]
            ranges = [IdRange(*flat[i : i + 3]) for i in range(0, len(flat), 3)]
            return cls(
                source=document["source"],
                committed=CommittedIds(ranges, max_ranges),
                newest_end_ms=int(document["newest_end_ms"]),
                committed_total=int(document["committed_total"]),
                dead_lettered_total=int(document.get("dead_lettered_total", 0)),
            )
        except (zlib.error, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise PermanentError(
                f"the checkpoint on the state topic cannot be read ({exc}); it was not written "
                "by this version of cdr-connector. Point kafka.state_topic at a new topic only "
                "if you accept re-publishing the records of the lookback window"
            ) from exc
