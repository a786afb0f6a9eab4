"""Everything one vendor account of the simulator holds (its records, tokens, faults and
traffic), shared by the HTTP handlers and the account's background tasks. All of it is used
from the event loop's thread only, except `preload`, which runs in an executor before the
server listens. The accounts of one simulator are its `Fleet` (fleet.py)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Mapping
from typing import Any

from cdr_connector.simulator.clock import Clock
from cdr_connector.simulator.config import SimulatorConfig
from cdr_connector.simulator.faults import FaultInjector
from cdr_connector.simulator.generator import CallFactory, Pools, backlog, with_shape
from cdr_connector.simulator.localtime import LocalTime
from cdr_connector.simulator.store import RecordStore
from cdr_connector.simulator.tokens import TokenRegistry


class SimulatorState:
    """One account. `pools` may be shared with other accounts: they are only read once built,
    and each account draws its calls from them with random streams of its own seed."""

    def __init__(self, config: SimulatorConfig, clock: Clock, pools: Pools | None = None) -> None:
        self.config = config
        self.clock = clock
        self.local_time = LocalTime(config.zone)
        self.pools = pools or Pools.build(config.seed)
        self.store = RecordStore(self.pools, self.local_time, download_ip=config.host)
        self.tokens = TokenRegistry(clock, config.token_ttl)
        self.faults = FaultInjector(config.faults, config.seed)
        # One random stream each, so that live traffic does not change what
        # /admin/generate produces and vice versa.
        self.live_calls = CallFactory(self.pools, random.Random(f"{config.seed}/live"))
        self._admin_calls = CallFactory(self.pools, random.Random(f"{config.seed}/generate"))
        self._poison_calls = CallFactory(self.pools, random.Random(f"{config.seed}/poison"))
        self.requests: Counter[tuple[str, str]] = Counter()
        self.taken_by_competitor = 0
        self.unexpected_errors = 0
        self.paused = False
        self._resumed = asyncio.Event()

    def preload(self) -> None:
        """Make the configured backlog visible, ending now. Blocking: seconds per million."""
        config = self.config
        rows = backlog(
            self.pools,
            config.seed,
            config.backlog,
            end=self.clock.time(),
            span=config.backlog_span,
            poison_rate=config.faults.poison_rate,
        )
        self.store.extend(rows)

    def generate(self, count: int) -> range:
        """Make `count` more calls visible now; returns their ids."""
        now = self.clock.time()
        poison_rate = self.faults.config.poison_rate
        return self.store.extend(self._admin_calls.call(now, poison_rate) for _ in range(count))

    def generate_poison(self, shape: int, count: int) -> range:
        """Make `count` more calls visible now, each served malformed the `shape` way (a
        poison kind's SHAPE); returns their ids."""
        now = self.clock.time()
        calls = self._poison_calls
        return self.store.extend(with_shape(calls.call(now), shape) for _ in range(count))

    def pause(self) -> None:
        self.paused = True
        self._resumed.clear()

    def resume(self) -> None:
        self.paused = False
        self._resumed.set()

    async def wait_resumed(self) -> None:
        await self._resumed.wait()

    def stats(self) -> dict[str, Any]:
        store = self.store
        return {
            "records": {
                "visible": len(store),
                "unqueried": store.unqueried,
                "queried": store.queried,
                "taken_by_competitor": self.taken_by_competitor,
                "poisoned": store.poisoned,
            },
            "requests": by_service(self.requests),
            "faults": dict(sorted(self.faults.injected.items())),
            "unexpected_errors": self.unexpected_errors,
            "live": {"rate": self.config.rate, "paused": self.paused},
        }


def by_service(requests: Mapping[tuple[str, str], int]) -> dict[str, dict[str, int]]:
    """Request counts by (service, outcome) as stats show them: outcomes by service."""
    nested: dict[str, dict[str, int]] = {}
    for (service, outcome), count in sorted(requests.items()):
        nested.setdefault(service, {})[outcome] = count
    return nested
