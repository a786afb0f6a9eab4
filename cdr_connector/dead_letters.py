"""Dead letters: a bill that cannot become a record, kept whole (or its beginning) with why.

A dead letter carries the raw bill as its value and the reason in headers (`cdr.error`,
`cdr.stage`, `cdr.field`, `cdr.id`), so an operator can read it, fix the cause and replay it.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import orjson

from cdr_connector.bill import dial_time_ms, raw_bytes
from cdr_connector.checkpoint import bill_fingerprint
from cdr_connector.config import Settings
from cdr_connector.errors import RecordError
from cdr_connector.kafka_sink import OutgoingMessage
from cdr_connector.redaction import Redactor
from cdr_connector.source import FetchedBatch

_MAX_HEADER_TEXT = 1000

Failure = tuple[Any, int | None, RecordError]
"""A bill that could not be converted, its id when it has a usable one, and why."""


class DeadLetters:
    """Builds the dead-letter messages of a batch's failures."""

    def __init__(self, settings: Settings, redactor: Redactor) -> None:
        """`redactor` cuts secrets out of the `cdr.error` header, which can quote vendor
        text."""
        self._topic = settings.kafka.dead_letter_topic
        self._limit = settings.kafka.max_value_bytes
        self._zone = settings.source.zone
        self._source = settings.source.name.encode()
        self._redact = redactor

    def build(
        self, failures: list[Failure], batch: FetchedBatch, known: Collection[str]
    ) -> DeadLetterBatch:
        """A dead letter for each failure, but none for a bill without a usable id whose
        fingerprint is in `known` (already dead-lettered) or repeated here: sweeps and audits
        list it again, and only its content tells it apart (`checkpoint.bill_fingerprint`)."""
        built = DeadLetterBatch()
        for bill, record_id, error in failures:
            if record_id is None:
                fingerprint = bill_fingerprint(bill)
                if fingerprint in known or fingerprint in built.fingerprints:
                    built.repeated += 1
                    continue
                built.fingerprints.append(fingerprint)
            built.messages.append(self._message(bill, record_id, error, batch))
            built.stages.append(error.stage)
            dial_ms = dial_time_ms(bill, self._zone, batch.fetched_at_ms)
            if dial_ms is not None:
                built.start_ms.append(dial_ms)
        return built

    def _message(
        self, bill: Any, record_id: int | None, error: RecordError, batch: FetchedBatch
    ) -> OutgoingMessage:
        reason = self._redact.cut(str(error), _MAX_HEADER_TEXT)
        headers: list[tuple[str, str | bytes | None]] = [
            ("cdr.error", reason.encode(errors="backslashreplace")),
            ("cdr.stage", error.stage.encode()),
            ("cdr.source", self._source),
            ("cdr.fetch_mode", batch.mode.encode()),
            ("cdr.fetched_at", str(batch.fetched_at_ms).encode()),
        ]
        if error.field:
            headers.append(("cdr.field", error.field.encode()))
        if record_id is not None:
            headers.append(("cdr.id", str(record_id).encode()))
        value = raw_bytes(bill)
        if len(value) > self._limit:
            # Too large for the dead-letter topic as well: its beginning, still JSON (quoting
            # at most doubles it); the whole bill stays with the vendor, found again by its id
            # and dial time.
            headers.append(("cdr.truncated", str(len(value)).encode()))
            head = value[: self._limit // 4].decode(errors="ignore")
            value = orjson.dumps({"truncated_bill": head, "bytes": len(value)})
        return OutgoingMessage(
            topic=self._topic,
            key=str(record_id).encode() if record_id is not None else None,
            value=value,
            headers=headers,
            timestamp_ms=batch.fetched_at_ms,
        )


class DeadLetterBatch:
    """The dead letters of one batch and what the state and the metrics need of them."""

    def __init__(self) -> None:
        self.messages: list[OutgoingMessage] = []
        self.stages: list[str] = []
        """The stage each dead letter failed at, for the metrics."""
        self.start_ms: list[int] = []
        """The dial times that could be read, counted in their hours for the audit."""
        self.fingerprints: list[str] = []
        """Fingerprints of the bills without a usable id, remembered in the state."""
        self.repeated = 0
        """Bills without a usable id dropped as already dead-lettered."""
