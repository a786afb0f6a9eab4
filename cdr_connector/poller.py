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

Neither a cycle nor a listing trusts `totalitems`: each ends at its first short or empty page,
and after `poll.max_listing_pages` pages at most, so an inflated count cannot make it endless.
A listing whose pages disagree with its count says so (a log line and a metric). A listing page
over `source.max_answer_bytes` is asked for again in smaller pages (down to one bill), since
with syncflag 2 or 3 nothing is marked; a live page that large has marked its records already,
and a sweep finds them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

from cdr_connector.api import BillPage, BillQuery, VendorApi
from cdr_connector.bill import bill_id
from cdr_connector.clock import Clock
from cdr_connector.config import Filters, PollSettings, SourceSettings
from cdr_connector.errors import AnswerTooLargeError
from cdr_connector.recorder import Recorder
from cdr_connector.source import (
    AUDIT,
    LIVE,
    Fetch,
    FetchedBatch,
    FetchMode,
    RoundFailedError,
    SyncFlag,
    Window,
)

log = logging.getLogger(__name__)

# The PBX's clock and ours may disagree; a window that ends a little in the future never
# misses a record whose dial time is ahead of our clock.
CLOCK_SKEW_MARGIN = timedelta(hours=1)


class Poller:
    """The GetBill `RecordSource`: live rounds (syncflag=1), listings (2 or 3) and counts."""

    def __init__(
        self,
        api: VendorApi,
        source: SourceSettings,
        poll: PollSettings,
        clock: Clock,
        recorder: Recorder,
    ) -> None:
        self._api = api
        self._source = source
        self._poll = poll
        self._clock = clock
        self._recorder = recorder

    def live_window(self) -> Window:
        now = datetime.fromtimestamp(self._clock.time(), self._source.zone)
        return now - timedelta(seconds=self._poll.lookback_seconds), now + CLOCK_SKEW_MARGIN

    def sweep_window(self) -> Window:
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
        while (remaining is None or remaining > 0) and next_page <= self._poll.max_listing_pages:
            count = 1 if remaining is None else min(concurrency, math.ceil(remaining / page_size))
            pages = list(range(next_page, next_page + count)) if paging else [1] * count
            queries = [self._query(start, end, LIVE.syncflag, page) for page in pages]
            answers = await self._fetch_round(queries, LIVE.mode)
            totals = [answer.totalitems for answer in answers]
            unseen = min(answer.totalitems - len(answer.bills) for answer in answers)
            batch = FetchedBatch("live", _bills_of(answers), self._now_ms(), min(totals))
            ids = set(map(bill_id, batch.bills))  # a loop in C: this sees every bill
            ids.discard(None)
            # A short page: the unqueried records ran out while this round was served.
            short = any(len(answer.bills) < page_size for answer in answers)
            # No reference to this round's bills stays here while the next round is fetched:
            # the committer frees them after their commit, in the wait for the next answers,
            # rather than just as the next round's requests are due to leave.
            del answers
            yield batch
            if not batch.bills or short:
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
        self, start: datetime, end: datetime, fetch: Fetch
    ) -> AsyncIterator[FetchedBatch]:
        """Every record of a window, read without marking, `concurrency` pages per batch,
        until a short or empty page, the count's last page, or `max_listing_pages`."""
        if fetch.marks:
            raise ValueError("a listing reads without marking: syncflag 2 or 3, not 1")
        mode, page_size = fetch.mode, self._poll.page_size
        (first,) = await self._read_pages(start, end, fetch, [1])
        yield FetchedBatch(mode, first.bills, self._now_ms())
        total = first.totalitems
        last_page = self._poll.max_listing_pages
        if total is not None:
            last_page = min(math.ceil(total / page_size), last_page)
        seen, short, page = first.count, first.count < page_size, 1
        for low in range(2, last_page + 1, self._poll.concurrency):
            if short:
                break
            high = min(last_page, low + self._poll.concurrency - 1)
            reads = await self._read_pages(start, end, fetch, range(low, high + 1))
            yield FetchedBatch(mode, [bill for r in reads for bill in r.bills], self._now_ms())
            seen += sum(r.count for r in reads)
            short = any(r.count < page_size for r in reads)
            page = high
        if total is not None and seen < total:
            self._count_mismatch(mode, total, seen, page, short)

    def _count_mismatch(
        self, mode: FetchMode, total: int, seen: int, pages: int, short: bool
    ) -> None:
        self._recorder.listing_total_mismatch(mode)
        why = "a short or empty page ended it" if short else "poll.max_listing_pages ended it"
        log.warning(
            "a %s listing held %d bills in %d page(s) where totalitems claimed %d; %s",
            mode,
            seen,
            pages,
            total,
            why,
            extra={"event": "total_mismatch", "mode": mode, "total": total, "seen": seen},
        )

    async def _read_pages(
        self,
        start: datetime,
        end: datetime,
        fetch: Fetch,
        pages: Sequence[int],
    ) -> list[_PageRead]:
        queries = [self._query(start, end, fetch.syncflag, page) for page in pages]
        reads = [self._read_page(query) for query in queries]
        return await self._gather_round(reads, fetch.mode)

    async def _read_page(self, query: BillQuery) -> _PageRead:
        """One listing page; over the answer size limit, the same records in smaller pages."""
        try:
            answer = await self._api.get_bills(query)
        except AnswerTooLargeError as exc:
            return await self._read_in_parts(query, exc)
        return _PageRead(answer.bills, answer.totalitems, len(answer.bills))

    async def _read_in_parts(self, query: BillQuery, error: AnswerTooLargeError) -> _PageRead:
        size = _smaller_page_size(query.page_size)
        if size is None:
            self._recorder.answer_skipped()
            log.error(
                "a one-bill page (%s to %s, syncflag %d, page %d) is skipped: %s. The bill stays "
                "with the vendor: raise source.max_answer_bytes and backfill this window",
                query.start,
                query.end,
                query.syncflag,
                query.page,
                error,
            )
            return _PageRead([], None, 1)  # counted as read, so the listing goes on past it
        parts = query.page_size // size
        first = (query.page - 1) * parts + 1
        log.warning("%s; asking for its records in %d pages of %d", error, parts, size)
        bills: list[Any] = []
        count, totals = 0, []
        for page in range(first, first + parts):  # one at a time: they are large
            part = await self._read_page(dataclasses.replace(query, page=page, page_size=size))
            bills += part.bills
            count += part.count
            if part.totalitems is not None:
                totals.append(part.totalitems)
            if part.count < size:
                break
        return _PageRead(bills, max(totals, default=None), count)

    async def count(self, start: datetime, end: datetime) -> int:
        """The vendor's count of all records (syncflag=3) with a dial time in [start, end]."""
        query = BillQuery(
            start=start,
            end=end,
            syncflag=AUDIT.syncflag,
            page=1,
            page_size=1,
            filters=self._source.filters,
        )
        answers = await self._fetch_round([query], AUDIT.mode)
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

    def local_hour(self, hour_start: datetime) -> Window:
        """The hour as an inclusive GetBill window, to the second, in the PBX's zone."""
        start = hour_start.astimezone(self._source.zone)
        return start, start + timedelta(seconds=3599)

    async def _fetch_round(self, queries: Sequence[BillQuery], mode: FetchMode) -> list[BillPage]:
        return await self._gather_round([self._api.get_bills(q) for q in queries], mode)

    async def _gather_round(
        self, requests: Sequence[Awaitable[_Answer]], mode: FetchMode
    ) -> list[_Answer]:
        """The answers of requests made at once; if any failed, RoundFailedError carrying the
        bills the others returned (they may be marked on the server already)."""
        results = await asyncio.gather(*requests, return_exceptions=True)
        answers = [r for r in results if not isinstance(r, BaseException)]
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            partial = FetchedBatch(mode, _bills_of(answers), self._now_ms())
            raise RoundFailedError(partial, failures[0]) from failures[0]
        return answers

    def _query(self, start: datetime, end: datetime, syncflag: SyncFlag, page: int) -> BillQuery:
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


class _HasBills(Protocol):
    @property
    def bills(self) -> list[Any]: ...


_Answer = TypeVar("_Answer", bound=_HasBills)


@dataclass(frozen=True, slots=True)
class _PageRead:
    """A listing page as read: its bills, the count the server claimed (None when no answer
    said), and how many bills it held (a skipped oversized bill included, so that it does not
    end the listing)."""

    bills: list[Any]
    totalitems: int | None
    count: int


def _smaller_page_size(size: int) -> int | None:
    """The largest page size below `size` that divides it (so the smaller pages cover the
    same records exactly), or None for a page of one bill."""
    for divisor in range(2, size + 1):
        if size % divisor == 0:
            return size // divisor
    return None


def _bills_of(answers: Sequence[_HasBills]) -> list[Any]:
    return [bill for answer in answers for bill in answer.bills]
