"""The connector with transactions switched off, for the exactly-once target only.

`python -m bench.untransacted run` is `python -m cdr_connector run` with one difference: its sink
produces each batch with the same producer settings (idempotent, acks all, the same compression
and linger) but without a `transactional.id`, and flushes instead of committing a transaction.
Everything else is the connector as installed: the poller, the conversion, the checkpoint
message, the metrics. The exactly-once target compares the connector against exactly this.

Never a way to run the connector: a crash between a flush and the next one would lose or repeat
records, which is why the connector has no such setting.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from cdr_connector import app
from cdr_connector.__main__ import main
from cdr_connector.errors import KafkaTransientError
from cdr_connector.kafka_clients import producer_config
from cdr_connector.kafka_sink import OutgoingMessage, TransactionalSink


class UntransactedSink(TransactionalSink):
    """TransactionalSink's producer and produce loop; a flush where the transaction was."""

    def _start_blocking(self) -> None:
        config = producer_config(self._settings)
        del config["transactional.id"]
        config["on_delivery"] = self._on_delivery
        self._producer = self._producer_factory(config)

    def _commit_blocking(self, messages: Sequence[OutgoingMessage]) -> None:
        producer = self._require_producer()
        self._delivery_errors.clear()
        for message in messages:
            self._produce(producer, message)
        remaining = producer.flush(self._timeout)
        if remaining or self._delivery_errors:
            raise KafkaTransientError(
                f"{remaining} messages not delivered, {len(self._delivery_errors)} failed"
            )


if __name__ == "__main__":
    app.TransactionalSink = UntransactedSink  # type: ignore[misc]
    sys.exit(main())
