"""The vendor accounts one simulator serves, and which of them a request speaks for.

A request names its account by what it carries: `App.Sip_Auth.Login` by its appid, the services
that take a token by the token, which only the account that issued it holds. So a token reads
and marks its own account's records and no other's. A request of a simulator with several
accounts that names none of them (an unknown appid or token, a form without either) is answered
as the real server answers a stranger, not authorised or token invalid, draws no account's
faults and is counted apart. A one-account simulator takes every request as its account's,
as it did before it could serve several.

The accounts share one clock and one set of pools (extensions, agents, customers: about 2.4 MB,
read only once built); everything else is per account (`SimulatorState`), so an account costs
little more than its records.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from aiohttp import web

from cdr_connector.simulator.clock import Clock
from cdr_connector.simulator.config import SimulatorConfig
from cdr_connector.simulator.generator import Pools
from cdr_connector.simulator.services import LOGIN
from cdr_connector.simulator.state import SimulatorState, by_service

K = TypeVar("K")


class Fleet:
    def __init__(self, config: SimulatorConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        pools = Pools.build(config.seed)
        self.accounts: dict[str, SimulatorState] = {
            account.appid: SimulatorState(account, clock, pools)
            for account in config.account_configs()
        }
        # Requests that named no account, and crashes while answering them.
        self.strangers: Counter[tuple[str, str]] = Counter()
        self.stranger_errors = 0

    @property
    def sole(self) -> SimulatorState | None:
        """The account of a one-account simulator; None when there are several."""
        if len(self.accounts) == 1:
            return next(iter(self.accounts.values()))
        return None

    def only(self) -> SimulatorState:
        """The account of a one-account simulator; LookupError naming the accounts otherwise."""
        sole = self.sole
        if sole is None:
            raise LookupError(f"this simulator serves the accounts {self.describe()}: pick one")
        return sole

    def account_of(self, service: str, form: Mapping[str, str]) -> SimulatorState | None:
        """The account a request speaks for, or None (see the module's docstring)."""
        sole = self.sole
        if sole is not None:
            return sole
        if service == LOGIN:
            return self.accounts.get(form.get("appid", ""))
        token = form.get("token", "")
        if not token:
            return None
        return next((a for a in self.accounts.values() if a.tokens.is_valid(token)), None)

    def describe(self) -> str:
        """The appids served, as an error message or a log line names them."""
        appids = list(self.accounts)
        return appids[0] if len(appids) == 1 else f"{appids[0]}..{appids[-1]}"

    @property
    def unexpected_errors(self) -> int:
        """Requests that crashed the simulator, whichever account they spoke for."""
        return self.stranger_errors + sum(a.unexpected_errors for a in self.accounts.values())

    def stats(self) -> dict[str, Any]:
        """One account's stats, or of several their totals (requests that named no account
        included; `live.rate` is the calls per second of them all, `live.paused` whether every
        one is paused) and `accounts`, each one's own stats by appid."""
        sole = self.sole
        if sole is not None:
            return sole.stats()
        accounts = self.accounts.values()
        each = {appid: account.stats() for appid, account in self.accounts.items()}
        faults = _total(account.faults.injected for account in accounts)
        return {
            "records": dict(_total(stats["records"] for stats in each.values())),
            "requests": by_service(_total([self.strangers, *(a.requests for a in accounts)])),
            "faults": dict(sorted(faults.items())),
            "unexpected_errors": self.unexpected_errors,
            "live": {
                "rate": sum(account.config.rate for account in accounts),
                "paused": all(account.paused for account in accounts),
            },
            "accounts": each,
        }


def _total(counts: Iterable[Mapping[K, int]]) -> Counter[K]:
    total: Counter[K] = Counter()
    for count in counts:
        total.update(count)
    return total


FLEET = web.AppKey("simulator_fleet", Fleet)
