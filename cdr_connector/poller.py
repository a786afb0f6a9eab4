"""Plans what to fetch: which dial-time windows, which pages, with how much concurrency.

`syncflag=1` is a consuming read: the server marks what it returns, so the pages of a listing
shift while it is read (after page 1 is returned, what was page 2 becomes page 1). Asking for
pages 1, 2, 3 at once would therefore skip records (they stay unqueried and come later, but out
of id order). Instead every request of a live round asks for page 1: on a marking server each
one takes the next `page_size` unqueried records, so a round's answers together are the lowest
unqueried ids, in one contiguous run, whatever order the server handles them in.

A server that does not mark (or marks late) answers page 1 with the same records again. When a
whole round brings nothing the previous round had not already brought, the poller switches to
plain paging (pages 2, 3, ...) for the rest of the cycle. Duplicates from either case are
removed by id when the batch is committed, against the committed state.

Every bill that was returned is handed on, even when another request of the same round failed:
a returned bill is already marked on the server and would otherwise only come back through a
sweep.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from cdr_connector.api import BillPage, BillQuery, VendorApi
from cdr_connector.clock import Clock
from cdr_connector.config import Filters, PollSettings, SourceSettings

FetchMode = Literal["live", "sweep", "audit", "backfill"]

# The PBX's clock and ours may disagree; a window that ends a little in the future never
# misses a record whose dial time is ahead of our clock.
CLOCK_SKEW_MARGIN = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class FetchedBatch:
    """Bills from one round of requests, to be committed together in one transaction."""

    mode: FetchMode
    bills: list[Any]
    fetched_at_ms: int
    backlog: int | None = None


class RoundFailedError(Exception):
    """Some requests of a round failed after others returned bills; carries both."""

    def __init__(self, batch: FetchedBatch, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.batch = batch
        self.cause = cause


def bill_id(bill: Any) -> int | None:
    """The bill's id as an int, or None when it has no usable id."""
    if not isinstance(bill, dict):
        return None
    value = bill.get("id")
    if type(value) is int:  # the common case first: this runs once per bill
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


class Poller:
    """Fetches rounds of bills for the live stream (syncflag=1) and for sweeps (syncflag=2)."""

    def __init__(
        self, api: VendorApi, source: SourceSettings, poll: PollSettings, clock: Clock
    ) -> None:
        self._api = api
        self._source = source
        self._poll = poll
        self._clock = clock

    def live_window(self) -> tuple[datetime, datetime]:
        now = datetime.fromtimestamp(self._clock.time(), self._source.zone)
        return now - timedelta(seconds=self._poll.lookback_seconds), now + CLOCK_SKEW_MARGIN

    def sweep_window(self) -> tuple[datetime, datetime]:
        now = datetime.fromtimestamp(self._clock.time(), self._source.zone)
        return now - timedelta(seconds=self._poll.sweep_window_seconds), now + CLOCK_SKEW_MARGIN

    async def live_cycle(self) -> AsyncIterator[FetchedBatch]:
        """Rounds of new records until the server reports no unqueried record is left."""
        start, end = self.live_window()
        page_size, concurrency = self._poll.page_size, self._poll.concurrency
        remaining: int | None = None
        paging = False
        next_page = 1
        previous_ids: set[int | None] = set()
        while remaining is None or remaining > 0:
            count = 1 if remaining is None else min(concurrency, math.ceil(remaining / page_size))
            pages = list(range(next_page, next_page + count)) if paging else [1] * count
            queries = [self._query(start, end, 1, page) for page in pages]
            answers = await self._fetch_round(queries, "live")
            totals = [answer.totalitems for answer in answers]
            unseen = min(answer.totalitems - len(answer.bills) for answer in answers)
            batch = FetchedBatch("live", _bills_of(answers), self._now_ms(), min(totals))
            ids = set(map(bill_id, batch.bills))  # a loop in C: this sees every bill
            ids.discard(None)
            # No reference to this round's bills stays here while the next round is fetched:
            # the committer frees them after their commit, in the wait for the next answers,
            # rather than just as the next round's requests are due to leave.
            del answers
            yield batch
            if not batch.bills:
                return
            del batch
            if not paging and ids and ids <= previous_ids:
                paging, next_page = True, 2
                remaining = totals[0] - page_size
                continue
            previous_ids = ids
            if paging:
                next_page += count
                remaining = min(totals) - (next_page - 1) * page_size
            else:
                remaining = unseen

    async def listing(
        self, start: datetime, end: datetime, syncflag: Literal[2, 3], mode: FetchMode
    ) -> AsyncIterator[FetchedBatch]:
        """Every record of a window, read without marking, `concurrency` pages per batch."""
        first = await self._fetch_round([self._query(start, end, syncflag, 1)], mode)
        yield FetchedBatch(mode, _bills_of(first), self._now_ms())
        last_page = math.ceil(first[0].totalitems / self._poll.page_size)
        for low in range(2, last_page + 1, self._poll.concurrency):
            high = min(last_page, low + self._poll.concurrency - 1)
            queries = [self._query(start, end, syncflag, p) for p in range(low, high + 1)]
            answers = await self._fetch_round(queries, mode)
            yield FetchedBatch(mode, _bills_of(answers), self._now_ms())

    async def count(self, start: datetime, end: datetime) -> int:
        """The vendor's count of all records (syncflag=3) with a dial time in [start, end]."""
        query = BillQuery(
            start=start,
            end=end,
            syncflag=3,
            page=1,
            page_size=1,
            filters=self._source.filters,
        )
        answers = await self._fetch_round([query], "audit")
        return answers[0].totalitems

    def audit_hours(self) -> list[datetime]:
        """Starts of the closed hours to audit, oldest first, as aware UTC datetimes.

        Closed: ended at least `audit_settle_seconds` ago, when nearly every call dialled in it
        has ended and been written. The oldest hour starts one hour inside the lookback, so the
        committed counts for it are complete.
        """
        now = self._clock.time()
        first = math.ceil((now - self._poll.lookback_seconds) / 3600) + 1
        last = math.floor((now - self._poll.audit_settle_seconds) / 3600) - 1
        return [datetime.fromtimestamp(hour * 3600, UTC) for hour in range(first, last + 1)]

    def local_hour(self, hour_start: datetime) -> tuple[datetime, datetime]:
        """The hour as an inclusive GetBill window, to the second, in the PBX's zone."""
        start = hour_start.astimezone(self._source.zone)
        return start, start + timedelta(seconds=3599)

    async def _fetch_round(self, queries: Sequence[BillQuery], mode: FetchMode) -> list[BillPage]:
        results = await asyncio.gather(
            *(self._api.get_bills(q) for q in queries), return_exceptions=True
        )
        answers = [r for r in results if isinstance(r, BillPage)]
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            partial = FetchedBatch(mode, _bills_of(answers), self._now_ms())
            raise RoundFailedError(partial, failures[0]) from failures[0]
        return answers

    def _query(
        self, start: datetime, end: datetime, syncflag: Literal[1, 2, 3], page: int
    ) -> BillQuery:
        filters: Filters = self._source.filters
        return BillQuery(
            start=start,
            end=end,
            syncflag=syncflag,
            page=page,
            page_size=self._poll.page_size,
            filters=filters,
        )

    def _now_ms(self) -> int:
        return int(self._clock.time() * 1000)


def _bills_of(answers: Sequence[BillPage]) -> list[Any]:
    return [bill for answer in answers for bill in answer.bills]
