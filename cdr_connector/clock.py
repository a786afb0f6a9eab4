"""Time as a dependency, so backoff, poll intervals and token expiry are tested without sleeping."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """Wall time for timestamps, monotonic time for durations, and an awaitable sleep."""

    def time(self) -> float:
        """Seconds since the epoch (for record times and expiries shown to people)."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin that never goes backwards (for durations)."""

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def sleep_unless(clock: Clock, seconds: float, *wake_on: asyncio.Event) -> None:
    """Sleep on `clock` until `seconds` have passed or one of `wake_on` is set."""
    sleeping = asyncio.ensure_future(clock.sleep(seconds))
    waiters = [asyncio.ensure_future(event.wait()) for event in wake_on]
    try:
        await asyncio.wait([sleeping, *waiters], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in (sleeping, *waiters):
            waiter.cancel()
