"""The simulator's own activity: live call generation and the competing reader."""

from __future__ import annotations

import asyncio
import random

from cdr_connector.simulator.state import SimulatorState


async def live_generation(state: SimulatorState) -> None:
    """Make calls visible as a Poisson process at `config.rate` per second, each at its own
    time (see generator.py for why ends, not starts, are drawn)."""
    rate = state.config.rate
    clock = state.clock
    arrivals = random.Random(f"{state.config.seed}/arrivals")
    due = clock.time() + arrivals.expovariate(rate)
    while True:
        if state.paused:
            await state.wait_resumed()
            # A paused PBX made no calls: start afresh rather than catch up.
            due = clock.time() + arrivals.expovariate(rate)
            continue
        now = clock.time()
        if due > now:
            await clock.sleep(due - now)
            continue
        poison_rate = state.faults.config.poison_rate
        rows = []
        while due <= now:
            rows.append(state.live_calls.call(due, poison_rate))
            due += arrivals.expovariate(rate)
        state.store.extend(rows)


async def competing_reader(state: SimulatorState) -> None:
    """Another client of the same account: every `competitor_interval` seconds it reads with
    syncflag=1, taking the first `competitor_batch` unqueried records away from every other
    reader (they stay visible to syncflag 2 and 3)."""
    faults = state.faults
    while True:
        interval = faults.config.competitor_interval
        if interval <= 0:
            await faults.wait_changed()
        elif await _sleep_unless_changed(state, interval):
            taken = state.store.take_unqueried(faults.config.competitor_batch)
            state.taken_by_competitor += len(taken)


async def _sleep_unless_changed(state: SimulatorState, seconds: float) -> bool:
    """Sleep on the simulator's clock; False if the faults changed first."""
    sleep = asyncio.ensure_future(state.clock.sleep(seconds))
    changed = asyncio.ensure_future(state.faults.wait_changed())
    try:
        await asyncio.wait((sleep, changed), return_when=asyncio.FIRST_COMPLETED)
        return sleep.done()
    finally:
        sleep.cancel()
        changed.cancel()
