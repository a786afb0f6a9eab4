"""The test doubles the unit tests share, one of each: a clock that moves when told to, a vendor
API that answers from lists, a sink that records transactions, a metrics recorder that counts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cdr_connector.api import BillPage, BillQuery
from cdr_connector.avro import SingleObjectEncoder
from cdr_connector.checkpoint import CheckpointState
from cdr_connector.clock import Clock, SystemClock
from cdr_connector.committer import CommitSummary, StateReader
from cdr_connector.config import Settings
from cdr_connector.kafka_sink import OutgoingMessage
from cdr_connector.pipeline import Pipeline
from cdr_connector.poller import Poller
from cdr_connector.source import FetchedBatch, FetchMode


def bill(record_id: int, ext: str = "8001", **changes: Any) -> dict[str, Any]:
    """A well-formed bill as GetBill returns it, with `changes` applied."""
    base: dict[str, Any] = {
        "id": record_id, "extnumber": ext, "destnumber": "13800000000",
        "displaynumber": "2190170001", "starttime": "2026-11-26 10:00:00",
        "answertime": "2026-11-26 10:00:05", "endtime": "2026-11-26 10:01:00", "duration": 60,
        "billsec": 55, "direction": "callout", "callmethod": 3, "userid": "0", "memberid": "0",
        "chengshudu": "0", "customuuid": "0", "recordfilename": "", "downloadip": "",
        "hangupdirection": 10041, "hangupcause": 10001, "userkey": "",
    }  # fmt: skip
    base.update(changes)
    return base


class FakeClock:
    """A clock that moves only when told to; `sleep` advances it instead of waiting."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._mono = 0.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += seconds
        self._mono += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)


class FakeApi:
    """Serves GetBill from a list of ids; `marks` decides whether syncflag=1 consumes."""

    def __init__(self, count: int, *, marks: bool = True, racing: bool = False) -> None:
        self.ids = list(range(1, count + 1))
        self.queried: set[int] = set()
        self.marks = marks
        self.racing = racing
        self.requests: list[tuple[int, int]] = []
        self.fail_next: list[BaseException] = []
        self.render: Callable[[int], Any] = lambda record_id: {"id": record_id}

    async def get_bills(self, query: BillQuery) -> BillPage:
        self.requests.append((query.syncflag, query.page))
        if self.fail_next:
            raise self.fail_next.pop()
        if query.syncflag == 1:
            listing = [i for i in self.ids if i not in self.queried]
        elif query.syncflag == 2:
            listing = [i for i in self.ids if i in self.queried]
        else:
            listing = list(self.ids)
        offset = (query.page - 1) * query.page_size
        page = listing[offset : offset + query.page_size]
        if self.racing:
            await asyncio.sleep(0)  # let a concurrent request read the same records first
        if query.syncflag == 1 and self.marks:
            self.queried.update(page)
        return BillPage(len(listing), query.page, query.page_size, [self.render(i) for i in page])

    async def login(self) -> None:
        return None

    async def close(self) -> None:
        return None


class FakeSink:
    """Commits into a list; can be told to fail the next commits."""

    def __init__(self) -> None:
        self.transactions: list[list[OutgoingMessage]] = []
        self.failures: list[Exception] = []

    async def start(self) -> None:
        return None

    async def commit(self, messages: Sequence[OutgoingMessage]) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.transactions.append(list(messages))

    async def close(self) -> None:
        return None

    def on(self, topic: str) -> list[OutgoingMessage]:
        return [m for t in self.transactions for m in t if m.topic == topic]


@dataclass
class FakeRecorder:
    """Keeps what the pipeline reports, in order, for tests to read."""

    events: list[tuple[str, Any]] = field(default_factory=list)
    commits: list[tuple[FetchMode, int, CommitSummary]] = field(default_factory=list)
    lag: Callable[[], float] | None = None

    def of(self, name: str) -> list[Any]:
        """The arguments of every report called `name`, in order."""
        return [args for event, args in self.events if event == name]

    def total(self, figure: str) -> int:
        """A `CommitSummary` figure summed over every committed batch."""
        return sum(int(getattr(summary, figure)) for _mode, _fetched, summary in self.commits)

    def fetch_cycle(self, mode: FetchMode, seconds: float) -> None:
        self.events.append(("fetch_cycle", (mode, seconds)))

    def backlog(self, records: int) -> None:
        self.events.append(("backlog", records))

    def committed(self, mode: FetchMode, fetched: int, summary: CommitSummary, now: float) -> None:
        self.commits.append((mode, fetched, summary))
        self.events.append(("committed", (mode, fetched, now)))

    def state_changed(self, state: CheckpointState) -> None:
        self.events.append(("state_changed", len(state.committed)))

    def freshness(self, lag: Callable[[], float]) -> None:
        self.lag = lag

    def commit_failed(self) -> None:
        self.events.append(("commit_failed", None))

    def brake_engaged(self, kind: str) -> None:
        self.events.append(("brake_engaged", kind))

    def audited(self, missing: int, at: float) -> None:
        self.events.append(("audited", (missing, at)))

    def listing_total_mismatch(self, mode: FetchMode) -> None:
        self.events.append(("listing_total_mismatch", mode))

    def answer_skipped(self) -> None:
        self.events.append(("answer_skipped", None))

    def api_request(self, service: str, outcome: str | None, seconds: float) -> None:
        self.events.append(("api_request", (service, outcome)))

    def api_error(self, kind: str) -> None:
        self.events.append(("api_error", kind))

    def token_renewed(self) -> None:
        self.events.append(("token_renewed", None))

    def transaction(self, result: str) -> None:
        self.events.append(("transaction", result))

    def delivery_errors(self, names: list[str]) -> None:
        self.events.append(("delivery_errors", names))


# --- assembling a pipeline from the fakes ----------------------------------------------------

SOURCE = "unit"
# 2026-11-26 13:33Z: hours after the calls of `bill` ended, as a real fetch would be.
FETCHED_AT_MS = 1_795_700_000_000


def batch(*bills: Any, mode: FetchMode = "live") -> FetchedBatch:
    return FetchedBatch(mode, list(bills), FETCHED_AT_MS)


def make_settings(
    source: str = SOURCE,
    *,
    source_settings: dict[str, Any] | None = None,
    poll: dict[str, Any] | None = None,
    brake: dict[str, Any] | None = None,
    kafka: dict[str, Any] | None = None,
) -> Settings:
    """Settings for a pipeline on fakes: retries after a millisecond, unless `poll` says."""
    return Settings(
        source={"name": source, "appid": "a", "accesskey": "k"} | (source_settings or {}),
        poll={"retry_initial_seconds": 0.001, "retry_max_seconds": 0.002} | (poll or {}),
        brake=brake or {},
        kafka=kafka or {},
    )  # type: ignore[arg-type]


def make_pipeline(
    sink: FakeSink,
    state: bytes | None = None,
    *,
    settings: Settings | None = None,
    api: FakeApi | None = None,
    recorder: FakeRecorder | None = None,
    state_reader: StateReader | None = None,
    clock: Clock | None = None,
    poller: type[Poller] = Poller,
) -> Pipeline:
    """A pipeline on fakes: the state topic holds `state` unless `state_reader` says."""
    settings = settings or make_settings()
    clock = clock or SystemClock()
    recorder = recorder or FakeRecorder()
    source = poller(api or FakeApi(0), settings.source, settings.poll, clock, recorder)
    return Pipeline(
        settings, source, sink, SingleObjectEncoder(), clock, recorder=recorder,
        state_reader=state_reader or (lambda _settings, _key: state),
    )  # fmt: skip


async def started(sink: FakeSink, state: bytes | None = None, **options: Any) -> Pipeline:
    """`make_pipeline`, started: the producer initialised and the state read."""
    pipeline = make_pipeline(sink, state, **options)
    await pipeline.start()
    return pipeline
