"""The simulator's settings: what it serves (`SimulatorConfig`) and how it misbehaves
(`FaultConfig`, also changeable while it runs through `/admin/faults`)."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FaultConfig:
    """Fault knobs. Rates are probabilities in 0..1, decided per request from a seeded random
    source; at most one of the rate faults hits a request (latency comes on top).

    Faults act on `App.Sip_Auth.Login` and `App.Sip_Cdr.GetBill` only. `http_5xx`, `ret_500` and
    `drop` happen before the request is processed (nothing is marked); `bad_json` and `slow`
    happen after it (a `syncflag=1` page is marked as queried although the client never gets
    it intact or in time), which is how a real server loses records to a flaky network.
    """

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    http_5xx_rate: float = 0.0
    ret_500_rate: float = 0.0
    bad_json_rate: float = 0.0
    drop_rate: float = 0.0
    slow_rate: float = 0.0
    slow_seconds: float = 30.0
    # Concurrent syncflag=1 readers can get the same records: marking waits race_delay_ms.
    racing: bool = False
    race_delay_ms: float = 50.0
    # Another client of the same account: every interval it takes (marks) the first
    # `competitor_batch` unqueried records. 0 switches it off.
    competitor_interval: float = 0.0
    competitor_batch: int = 10
    # Fraction of generated bills (backlog, live, /admin/generate) served malformed, each in
    # one of poison.py's kinds drawn uniformly (bad ids, bytes that are not JSON, ...).
    poison_rate: float = 0.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check_type(f.name, getattr(self, f.name), f.type)
        for name in _RATE_FIELDS:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        for name in _NON_NEGATIVE_FIELDS:
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if self.competitor_batch < 1:
            raise ValueError(f"competitor_batch must be >= 1, got {self.competitor_batch}")

    def updated(self, changes: Mapping[str, Any]) -> FaultConfig:
        """A copy with `changes` applied; ValueError names unknown keys and bad values."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ValueError(f"unknown fault keys: {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_RATE_FIELDS = (
    "http_5xx_rate",
    "ret_500_rate",
    "bad_json_rate",
    "drop_rate",
    "slow_rate",
    "poison_rate",
)
_NON_NEGATIVE_FIELDS = (
    "latency_ms",
    "jitter_ms",
    "slow_seconds",
    "race_delay_ms",
    "competitor_interval",
)


def _check_type(name: str, value: object, annotation: object) -> None:
    """Reject values of the wrong JSON type (admin updates come from JSON); an int is fine
    where a float is expected, a bool is never a number."""
    if annotation == "bool":
        ok = isinstance(value, bool)
    elif annotation == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok:
        raise ValueError(f"{name} must be of type {annotation}, got {value!r}")


# A slip guard (an extra zero), not a capacity: every account holds its own records.
MAX_ACCOUNTS = 1000


@dataclass(frozen=True)
class SimulatorConfig:
    """What the simulated PBX looks like. `port=0` picks any free port.

    With `accounts` above 1 the simulator serves that many vendor accounts, each as this
    config describes one (`account_configs`); with 1 it serves `appid` itself."""

    host: str = "127.0.0.1"
    port: int = 0
    appid: str = "demo-appid"
    accesskey: str = "demo-accesskey"
    seed: int = 1
    accounts: int = 1
    # Calls per second made visible by live generation; 0 switches it off.
    rate: float = 2.0
    # Records made visible before the server starts listening, all unqueried.
    backlog: int = 10_000
    # The backlog's calls end during the `backlog_span` seconds before start-up.
    backlog_span: float = 86_400.0
    timezone: str = "Asia/Shanghai"
    token_ttl: float = 43_200.0
    companyname: str = "Demo Telecom"
    faults: FaultConfig = field(default_factory=FaultConfig)

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, got {self.port}")
        if not 1 <= self.accounts <= MAX_ACCOUNTS:
            raise ValueError(f"accounts must be 1..{MAX_ACCOUNTS}, got {self.accounts}")
        if not (math.isfinite(self.rate) and self.rate >= 0):
            raise ValueError(f"rate must be a finite number >= 0, got {self.rate}")
        if self.backlog < 0:
            raise ValueError(f"backlog must be >= 0, got {self.backlog}")
        if not (math.isfinite(self.backlog_span) and self.backlog_span > 0):
            raise ValueError(f"backlog_span must be > 0 seconds, got {self.backlog_span}")
        if not (math.isfinite(self.token_ttl) and self.token_ttl > 0):
            raise ValueError(f"token_ttl must be > 0 seconds, got {self.token_ttl}")
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"timezone {self.timezone!r} is not an IANA time zone") from exc

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    def account_configs(self) -> list[SimulatorConfig]:
        """One config per account served. A single account is this config unchanged; of
        several, account i (1..N) logs in with `<appid>-i` and `<accesskey>-i` and draws its
        calls from a seed of its own, so that no two accounts serve the same records."""
        if self.accounts == 1:
            return [self]
        return [
            dataclasses.replace(
                self,
                appid=f"{self.appid}-{index}",
                accesskey=f"{self.accesskey}-{index}",
                seed=_account_seed(self.seed, index),
                accounts=1,
            )
            for index in range(1, self.accounts + 1)
        ]


def _account_seed(seed: int, index: int) -> int:
    """A seed for account `index` of a simulator seeded `seed`: a hash rather than arithmetic
    such as `seed * 1000 + index`, whose accounts would repeat another seed's."""
    digest = hashlib.blake2b(f"{seed}/account/{index}".encode(), digest_size=7).digest()
    return int.from_bytes(digest, "big")
