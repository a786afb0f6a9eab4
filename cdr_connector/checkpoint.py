"""What has been committed: the ids of the records already in Kafka, kept compactly.

The state is written to a compacted Kafka topic in the same transaction as the records it
describes, so it can never claim a record that is not in the data topic, nor miss one that is.

Ids are mostly dense integers (the vendor numbers its records as it writes them), so they are
kept as inclusive ranges `[low, high]`; with no GetBill filters a whole day of records is one
range. Each range also remembers when its newest id was committed, which lets the state forget
ranges committed longer ago than the lookback horizon. A record comes back through syncflag=1 or
a sweep only while its dial time is inside that horizon, and a dial time is never later than the
commit, so nothing forgotten can come back that way; a backfill is de-duplicated against
everything committed within the horizon, including earlier backfills.

Size: ids without gaps cost one range whatever their number (1,000,000 records a day, no
filters: a few hundred bytes). Each gap in the id sequence (records of other extensions when
GetBill filters are set, records still missing) costs one range, about 10 bytes compressed;
`DEFAULT_MAX_RANGES` bounds the worst case well under Kafka's default 1 MB message size.

`hour_counts` counts committed records by the UTC hour of their dial time, for the audit, which
compares them with the vendor's own count of each closed hour.

A bill without a usable id cannot be a record, and no range can say it was dead-lettered. It is
known by its content instead (`bill_fingerprint`); `dead_letter_fingerprints` keeps those of the
lookback horizon, so the sweeps and audits that list it again do not dead-letter it again.
"""

from __future__ import annotations

import hashlib
import zlib
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from cdr_connector.bill import raw_bytes
from cdr_connector.errors import PermanentError

STATE_VERSION = 1
# A message on the state topic must stay well under the broker's default 1 MB limit; each range
# costs about 30 bytes before compression, so this keeps the worst case (every id alone) safe.
DEFAULT_MAX_RANGES = 20_000
# Bills without a usable id are a vendor fault, rare; 1000 fingerprints take about 35 KB of
# the state before compression.
MAX_DEAD_LETTER_FINGERPRINTS = 1_000
HOUR_MS = 3_600_000


def hour_start(epoch_ms: int) -> int:
    """The start of the UTC hour `epoch_ms` falls in: the key of `hour_counts`."""
    return epoch_ms - epoch_ms % HOUR_MS


@dataclass(slots=True)
class IdRange:
    low: int
    high: int
    committed_at_ms: int


@dataclass(slots=True)
class CommittedIds:
    """A sorted set of disjoint id ranges, with merge on insert."""

    ranges: list[IdRange] = field(default_factory=list)
    max_ranges: int = DEFAULT_MAX_RANGES

    def __contains__(self, record_id: int) -> bool:
        index = bisect_right(self.ranges, record_id, key=_low) - 1
        return index >= 0 and self.ranges[index].high >= record_id

    def highest(self) -> int | None:
        """The highest id held, or None when empty: every id above it is new."""
        return self.ranges[-1].high if self.ranges else None

    def __len__(self) -> int:
        return sum(r.high - r.low + 1 for r in self.ranges)

    def add_many(self, ids: Iterable[int], committed_at_ms: int) -> None:
        """Add ids committed at one moment; each run of consecutive ids is added at once."""
        ordered = sorted(ids)
        run_start = 0
        for index in range(1, len(ordered) + 1):
            if index == len(ordered) or ordered[index] != ordered[index - 1] + 1:
                self._add_run(ordered[run_start], ordered[index - 1], committed_at_ms)
                run_start = index
        self._enforce_bound()

    def _add_run(self, low: int, high: int, committed_at_ms: int) -> None:
        """Add [low, high], merging it with every range it overlaps or touches."""
        ranges = self.ranges
        if ranges and ranges[-1].high + 1 == low:  # the common case: the next ids
            ranges[-1].high = high
            ranges[-1].committed_at_ms = max(ranges[-1].committed_at_ms, committed_at_ms)
            return
        # Disjoint and sorted, the ranges are ordered by their highs too.
        first = bisect_left(ranges, low - 1, key=_high)  # the first that reaches low - 1
        last = bisect_right(ranges, high + 1, key=_low)  # past the last that starts by high + 1
        if first == last:
            ranges.insert(first, IdRange(low, high, committed_at_ms))
            return
        merged = ranges[first]
        if first + 1 == last and merged.low <= low and high <= merged.high:
            return  # nothing new, as `add` of an id already there
        merged.low = min(merged.low, low)
        merged.high = max(ranges[last - 1].high, high)
        merged.committed_at_ms = max(
            committed_at_ms, *(r.committed_at_ms for r in ranges[first:last])
        )
        del ranges[first + 1 : last]

    def add(self, record_id: int, committed_at_ms: int) -> None:
        self._add_run(record_id, record_id, committed_at_ms)

    def forget_before(self, horizon_ms: int) -> int:
        """Drop ranges last committed before the horizon; return how many."""
        kept = [r for r in self.ranges if r.committed_at_ms >= horizon_ms]
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


def _high(id_range: IdRange) -> int:
    return id_range.high


@dataclass(slots=True)
class CheckpointState:
    """Everything the connector must remember across restarts, for one source."""

    source: str
    committed: CommittedIds = field(default_factory=CommittedIds)
    newest_end_ms: int = 0
    committed_total: int = 0
    dead_lettered_total: int = 0
    hour_counts: dict[int, int] = field(default_factory=dict)
    dead_letter_fingerprints: dict[str, int] = field(default_factory=dict)
    """Dead-lettered bills without a usable id: `bill_fingerprint` -> when committed (ms),
    oldest first."""

    def count_hours(self, start_times_ms: Iterable[int]) -> None:
        counts = self.hour_counts
        for start_ms in start_times_ms:
            hour = hour_start(start_ms)
            counts[hour] = counts.get(hour, 0) + 1

    def add_hour_counts(self, counts: dict[int, int]) -> None:
        """Add counts already made per hour, keyed by `hour_start`."""
        hour_counts = self.hour_counts
        for hour, count in counts.items():
            hour_counts[hour] = hour_counts.get(hour, 0) + count

    def add_dead_letter_fingerprints(
        self, fingerprints: Iterable[str], committed_at_ms: int
    ) -> None:
        known = self.dead_letter_fingerprints
        for fingerprint in fingerprints:
            known.pop(fingerprint, None)
            known[fingerprint] = committed_at_ms
        excess = len(known) - MAX_DEAD_LETTER_FINGERPRINTS
        if excess > 0:  # this runs for every transaction: no copy of the dict unless needed
            for oldest in list(known)[:excess]:
                del known[oldest]

    def forget_before(self, horizon_ms: int) -> None:
        self.committed.forget_before(horizon_ms)
        for hour in [h for h in self.hour_counts if h + HOUR_MS < horizon_ms]:
            del self.hour_counts[hour]
        known = self.dead_letter_fingerprints
        for fingerprint in [f for f, at_ms in known.items() if at_ms < horizon_ms]:
            del known[fingerprint]

    def encode(self) -> bytes:
        """zlib-compressed JSON: readable with standard tools, small for dense ids."""
        flat: list[int] = []
        for r in self.committed.ranges:
            flat.extend((r.low, r.high, r.committed_at_ms))
        document = {
            "version": STATE_VERSION,
            "source": self.source,
            "ranges": flat,
            "newest_end_ms": self.newest_end_ms,
            "committed_total": self.committed_total,
            "dead_lettered_total": self.dead_lettered_total,
            "hour_counts": [[hour, count] for hour, count in sorted(self.hour_counts.items())],
            "dead_letter_fingerprints": [
                [f, at_ms] for f, at_ms in self.dead_letter_fingerprints.items()
            ],
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
                hour_counts={int(h): int(c) for h, c in document.get("hour_counts", [])},
                dead_letter_fingerprints={
                    str(f): int(at_ms) for f, at_ms in document.get("dead_letter_fingerprints", [])
                },
            )
        except (zlib.error, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise PermanentError(
                f"the checkpoint on the state topic cannot be read ({exc}); it was not written "
                "by this version of cdr-connector. Point kafka.state_topic at a new topic only "
                "if you accept re-publishing the records of the lookback window"
            ) from exc


def bill_fingerprint(bill: Any) -> str:
    """What identifies a bill without a usable id: its content (keys in sorted order; the raw
    bytes of an unreadable one), hashed to 16 hex digits (BLAKE2b, 8 bytes; a chance collision
    among a horizon's few is nil)."""
    return hashlib.blake2b(raw_bytes(bill, sort_keys=True), digest_size=8).hexdigest()
