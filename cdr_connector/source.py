"""What the connector asks of a vendor account: the `RecordSource` protocol and its vocabulary.

The scheduler speaks to a source only through this protocol: rounds of new records (the
consuming read), listings of a window that mark nothing (recovery, audit, backfill), and the
vendor's count of a window. The GetBill poller (`poller.Poller`) is the one implementation
today; a second vendor API, or a source that fans out over several accounts, is another.

How a window is read and why travel together as one `Fetch` value: a sweep always reads with
syncflag 2, an audit and a backfill with syncflag 3, the live stream with syncflag 1, and the
mode is what the records and the metrics are labelled with.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

FetchMode = Literal["live", "sweep", "audit", "backfill"]
SyncFlag = Literal[1, 2, 3]


@dataclass(frozen=True, slots=True)
class Fetch:
    """One way of reading records: the mode they are labelled with and the syncflag asked."""

    mode: FetchMode
    syncflag: SyncFlag

    @property
    def marks(self) -> bool:
        """Whether the vendor marks what this read returns (a consuming read)."""
        return self.syncflag == 1


LIVE = Fetch("live", 1)
"""New records, marked by the vendor as they are returned."""
SWEEP = Fetch("sweep", 2)
"""The recent window, queried or not: recovers records fetched but never committed."""
AUDIT = Fetch("audit", 3)
"""All records of a closed hour whose vendor count exceeds the committed count."""
BACKFILL = Fetch("backfill", 3)
"""All records of a historical window, asked for on the command line."""

Window = tuple[datetime, datetime]
"""An inclusive window of dial time, to the second, in the PBX's zone."""


@dataclass(frozen=True, slots=True)
class FetchedBatch:
    """Bills from one round of requests, to be committed together in one transaction."""

    mode: FetchMode
    bills: list[Any]
    fetched_at_ms: int
    backlog: int | None = None
    settles_hour: tuple[int, int] | None = None
    """(hour start in UTC epoch ms, the vendor's count): the audit has listed that whole hour
    in the batches before this one, so once they are committed, so is everything the vendor
    counts in it, however unreadable some of its bills' dial times were."""


class RoundFailedError(Exception):
    """Some requests of a round failed after others returned bills; carries both."""

    def __init__(self, batch: FetchedBatch, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.batch = batch
        self.cause = cause


class RecordSource(Protocol):
    """A vendor account as the scheduler sees it.

    Every method that reads may raise `RoundFailedError` carrying the bills that did arrive
    (with a consuming read they are marked already and must still be committed).
    """

    def live_cycle(self) -> AsyncIterator[FetchedBatch]:
        """Rounds of new records (`LIVE`) until none is left unqueried."""
        ...

    def listing(self, start: datetime, end: datetime, fetch: Fetch) -> AsyncIterator[FetchedBatch]:
        """Every record of the window, read with `fetch` (never `LIVE`: a listing marks
        nothing), in batches."""
        ...

    async def count(self, start: datetime, end: datetime) -> int:
        """The vendor's count of all records with a dial time in the window."""
        ...

    def sweep_window(self) -> Window:
        """The recent window a sweep lists."""
        ...

    def audit_hours(self) -> list[datetime]:
        """Starts of the closed hours to audit, oldest first, as aware UTC datetimes."""
        ...

    def local_hour(self, hour_start: datetime) -> Window:
        """The hour starting at `hour_start` as a window in the PBX's zone."""
        ...
