"""The clocks: the system one really waits, the fake one moves only when told and lets other
tasks run while it "sleeps"."""

from __future__ import annotations

import asyncio
import time

from cdr_connector.clock import SystemClock
from tests.fakes import FakeClock


async def test_the_system_clock_sleeps_for_the_time_asked() -> None:
    clock = SystemClock()
    before = time.monotonic()
    await clock.sleep(0.05)
    assert time.monotonic() - before >= 0.045


def test_advancing_the_fake_clock_moves_both_times_by_the_same_amount() -> None:
    clock = FakeClock(start=1000.0)
    mono = clock.monotonic()
    clock.advance(2.5)
    assert clock.time() == 1002.5
    assert clock.monotonic() - mono == 2.5


async def test_a_fake_sleep_advances_the_clock_and_is_recorded() -> None:
    clock = FakeClock(start=1000.0)
    await clock.sleep(3.0)
    await clock.sleep(0.5)
    assert clock.time() == 1003.5
    assert clock.sleeps == [3.0, 0.5]


async def test_a_fake_sleep_lets_other_tasks_run() -> None:
    clock = FakeClock()
    ran: list[str] = []

    async def other() -> None:
        ran.append("other")

    task = asyncio.create_task(other())
    await clock.sleep(1.0)
    assert ran == ["other"]
    await task
