"""`sleep_unless`: a pause on the injected clock that an event cuts short, leaving nothing
running behind it."""

from __future__ import annotations

import asyncio

from cdr_connector.clock import sleep_unless
from tests.fakes import FakeClock


class EndlessClock(FakeClock):
    """A clock whose sleep never ends by itself; it notes whether it was cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.cancelled = 0

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


async def test_it_sleeps_on_the_clock_when_no_event_comes() -> None:
    clock = FakeClock(start=1000.0)
    await sleep_unless(clock, 30.0, asyncio.Event())
    assert clock.sleeps == [30.0]
    assert clock.time() == 1030.0


async def test_an_event_set_ends_it_and_cancels_the_sleep() -> None:
    clock = EndlessClock()
    wake = asyncio.Event()
    pausing = asyncio.create_task(sleep_unless(clock, 30.0, asyncio.Event(), wake))
    await asyncio.sleep(0)
    assert not pausing.done()
    wake.set()
    await asyncio.wait_for(pausing, 5)
    await asyncio.sleep(0)
    assert clock.cancelled == 1
    assert clock.sleeps == [30.0]


async def test_an_event_already_set_returns_without_waiting_for_the_clock() -> None:
    clock = EndlessClock()
    done = asyncio.Event()
    done.set()
    await asyncio.wait_for(sleep_unless(clock, 30.0, done), 5)


async def test_a_finished_sleep_leaves_no_waiter_behind() -> None:
    clock = FakeClock()
    events = [asyncio.Event(), asyncio.Event()]
    before = asyncio.all_tasks()
    await sleep_unless(clock, 1.0, *events)
    await asyncio.sleep(0)
    assert asyncio.all_tasks() == before
