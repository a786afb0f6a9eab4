"""What the pipeline reports as it runs, as one injected dependency rather than global metrics.

The scheduler, the committer, the poller, the API client and the Kafka sink tell a `Recorder`
what happened (a cycle ended, a
transaction committed these figures, the brake engaged); the Prometheus implementation
(`metrics.PrometheusRecorder`) turns that into series labelled with the source's name. Tests
pass a recorder of their own (`tests/fakes.py`) and read what was reported, without touching
the process-wide registry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from cdr_connector.checkpoint import CheckpointState
    from cdr_connector.committer import CommitSummary
    from cdr_connector.source import FetchMode


class Recorder(Protocol):
    def fetch_cycle(self, mode: FetchMode, seconds: float) -> None:
        """A live cycle, or a listing's batch, took `seconds` from its start to its commit."""

    def backlog(self, records: int) -> None:
        """The vendor reports `records` not yet queried."""

    def committed(self, mode: FetchMode, fetched: int, summary: CommitSummary, now: float) -> None:
        """A batch of `fetched` bills committed with these figures at `now` (epoch seconds)."""

    def state_changed(self, state: CheckpointState) -> None:
        """The checkpoint state was loaded or advanced."""

    def freshness(self, lag: Callable[[], float]) -> None:
        """`lag()` is the freshness lag in seconds, read whenever it is reported."""

    def commit_failed(self) -> None:
        """A transaction failed with an unexpected error and is tried again."""

    def brake_engaged(self, kind: str) -> None:
        """The brake of `kind` (`brake.Brake.kind`) stopped live reads."""

    def audited(self, missing: int, at: float) -> None:
        """An audit found `missing` records in closed hours, finishing at `at`."""

    def listing_total_mismatch(self, mode: FetchMode) -> None:
        """A listing's pages held fewer bills than its totalitems claimed."""

    def answer_skipped(self) -> None:
        """A one-bill page over the answer size limit was skipped."""

    def api_request(self, service: str, outcome: str | None, seconds: float) -> None:
        """A vendor API request (`service`: login, getbill, recordfile) ended with `outcome`
        (ok, retryable, permanent, content; None when it was cancelled) after `seconds`."""

    def api_error(self, kind: str) -> None:
        """A vendor API request failed in a way of this kind (`metrics.API_ERROR_KINDS`)."""

    def token_renewed(self) -> None:
        """A login obtained a new vendor API token."""

    def transaction(self, result: str) -> None:
        """A Kafka transaction was `committed` or `aborted`."""

    def delivery_errors(self, names: list[str]) -> None:
        """The librdkafka errors (by name) a transaction's deliveries reported."""
