"""A batch of bills -> the messages of its transaction, and the figures they add up to.

The committer (`pipeline`) decides when a batch converts and what happens to it; this module
does what it does once per bill: drop an id already committed or repeated in the batch, write
the bill (`BillWriter`), set aside a bill that cannot be a record, and then build the records'
messages in id order, tallying in the same pass what the state and the metrics need of them.

Installed with a C compiler at hand it is compiled by mypyc together with the bill writer
(setup.py), so that it calls the writer natively: what it adds to the writer's own time then
falls from about 2.3 to 1.4 µs a record (bench/README.md, finding 16). The source is the same
either way, and tests run both builds.
"""

from __future__ import annotations

from typing import Any, Final

from cdr_connector.bill import ID_MIN, bill_id
from cdr_connector.bill_writer import BillWriter, EncodedRecord
from cdr_connector.checkpoint import CommittedIds
from cdr_connector.errors import RecordError
from cdr_connector.kafka_sink import OutgoingMessage

# `checkpoint.hour_start`, written out: from compiled code a call into that interpreted module
# cost about 90 ns a record. Tests hold the two to the same hours.
HOUR_MS: Final = 3_600_000

Header = tuple[str, str | bytes | None]
CallKind = tuple[str, int, bool]
"""direction, callmethod, answered"""


def is_compiled() -> bool:
    """Whether this module runs as its mypyc build rather than from its Python source."""
    return not __file__.endswith(".py")


def record_too_large(value: bytes, limit: int) -> RecordError:
    return RecordError(
        f"the record's Avro value is {len(value)} bytes, more than kafka.max_value_bytes "
        f"({limit}); Kafka would refuse it. Raise the limit only together with the topic's "
        "max.message.bytes and librdkafka's message.max.bytes (kafka.client_config)",
        stage="encode",
    )


def unexpected_failure(exc: Exception) -> RecordError:
    """A bill that made the writers raise something other than `RecordError`: dead-lettered
    like any bad bill, so that no bill can stop the stream however it is malformed."""
    return RecordError(
        f"converting the bill failed unexpectedly ({type(exc).__name__}: {exc})", stage="convert"
    )


_new_message = tuple.__new__  # looked up once: `tuple.__new__` in the body is looked up per call


def _message(
    *, topic: str, key: bytes, value: bytes, headers: list[Header], timestamp_ms: int
) -> OutgoingMessage:
    """`OutgoingMessage(...)`, each field typed and named, without the class's Python-level
    `__new__`: that costs about 0.2 µs a record in the compiled build (bench/README.md,
    "Checked construction"). Field for field in `OutgoingMessage`'s order, which the tests
    reading the messages' fields by name hold it to."""
    return _new_message(OutgoingMessage, (topic, key, value, headers, timestamp_ms))


def _record_id(record: EncodedRecord) -> int:
    return record[0]


class RecordTallies:
    """What a batch's records add up to, for the state and the metrics."""

    __slots__ = ("billed_seconds", "calls", "end_times_ms", "start_hours", "unknown_fields")

    def __init__(self) -> None:
        self.unknown_fields = 0
        self.end_times_ms: list[int] = []
        self.start_hours: dict[int, int] = {}
        """The hour each record was dialled in (as `checkpoint.hour_start` has it) -> how many."""
        self.calls: dict[CallKind, int] = {}
        self.billed_seconds: dict[str, int] = {}
        """direction -> billsec added up"""

    @property
    def newest_end_ms(self) -> int:
        return max(self.end_times_ms, default=0)

    def latencies(self, now: float) -> list[float]:
        """Seconds from each call's end to `now`, never negative."""
        return [max(0.0, now - end_ms / 1000) for end_ms in self.end_times_ms]

    def replace_with(self, other: RecordTallies) -> None:
        """Hold `other`'s figures (copies of them) instead of this one's own."""
        self.unknown_fields = other.unknown_fields
        self.end_times_ms = other.end_times_ms.copy()
        self.start_hours = other.start_hours.copy()
        self.calls = other.calls.copy()
        self.billed_seconds = other.billed_seconds.copy()

    def add(self, record: EncodedRecord) -> None:
        start_ms = record.starttime
        hour = start_ms - start_ms % HOUR_MS
        self.start_hours[hour] = self.start_hours.get(hour, 0) + 1
        self.end_times_ms.append(record.endtime)
        self.unknown_fields += record.unknown_fields
        direction = record.direction
        kind = (direction, record.callmethod, record.answered)
        self.calls[kind] = self.calls.get(kind, 0) + 1
        self.billed_seconds[direction] = self.billed_seconds.get(direction, 0) + record.billsec


class BatchWriter:
    """The records of one batch, written slice by slice (the committer yields to the event loop
    between slices), then turned into messages.

    What it finds is in its attributes as it writes: `records`, `failures`, `new_ids`,
    `deduplicated` and `tallies` (the records' figures). `messages` only reads them, so it may
    be called again and gives the same messages.
    """

    __slots__ = (
        "_committed",
        "_highest",
        "_max_value_bytes",
        "_seen",
        "_writer",
        "deduplicated",
        "failures",
        "new_ids",
        "records",
        "tallies",
    )

    def __init__(self, writer: BillWriter, committed: CommittedIds, max_value_bytes: int) -> None:
        self._writer = writer
        self._committed = committed
        # Live records come above every committed id: one comparison instead of a lookup.
        highest = committed.highest()
        self._highest: int = ID_MIN - 1 if highest is None else highest
        self._max_value_bytes = max_value_bytes
        self._seen: set[int] = set()
        self.records: list[EncodedRecord] = []
        self.failures: list[tuple[Any, int | None, RecordError]] = []
        """Bills that cannot be records: the bill, its id if it has one, and why."""
        self.new_ids: list[int] = []
        """Every id this batch commits: its records' and its dead letters'."""
        self.deduplicated = 0
        self.tallies = RecordTallies()

    def write(self, bills: list[Any], start: int, stop: int) -> None:
        """Write `bills[start:stop]`."""
        writer, committed, highest, seen = self._writer, self._committed, self._highest, self._seen
        max_value_bytes, tallies = self._max_value_bytes, self.tallies
        for index in range(start, stop):
            bill = bills[index]
            record_id = bill_id(bill)
            if record_id is not None:
                if (record_id <= highest and record_id in committed) or record_id in seen:
                    self.deduplicated += 1
                    continue
                seen.add(record_id)
            try:
                record = writer.write(bill)
                if len(record.value) > max_value_bytes:
                    raise record_too_large(record.value, max_value_bytes)
            except RecordError as exc:
                self._fail(bill, record_id, exc)
                continue
            except Exception as exc:
                self._fail(bill, record_id, unexpected_failure(exc))
                continue
            self.records.append(record)
            self.new_ids.append(record.id)
            tallies.add(record)

    def _fail(self, bill: Any, record_id: int | None, error: RecordError) -> None:
        self.failures.append((bill, record_id, error))
        if record_id is not None:
            self.new_ids.append(record_id)

    def messages(
        self,
        topic: str,
        constant_headers: tuple[Header, ...],
        tallies: RecordTallies | None = None,
    ) -> list[OutgoingMessage]:
        """The records' messages in id order (records of one extension keep their id order),
        each with its `cdr.id` header before `constant_headers`.

        `tallies`, when given, is set to the batch's figures (`self.tallies`), replacing what
        it held, so that calling this twice leaves it as calling it once does.
        """
        if tallies is not None:
            tallies.replace_with(self.tallies)
        return [
            _message(
                topic=topic,
                key=record.key,
                value=record.value,
                headers=[("cdr.id", str(record.id).encode()), *constant_headers],
                timestamp_ms=record.endtime,
            )
            for record in sorted(self.records, key=_record_id)
        ]
