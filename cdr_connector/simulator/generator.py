"""Realistic call detail records from a seed.

A call is generated when its record becomes visible (when the call has ended and the PBX has
written the record back); its start time is then computed backwards from its duration. For a
PBX with calls arriving at a steady rate and independent durations, ends arrive at the same
rate as starts, so this gives the right mix while letting ids follow visibility: long calls
and slow write-backs produce late records with old start times, as on the real server.

A call is a `Row` of ints, strings being codes into a shared `Vocabulary`, so that a million
records fit in a few tens of megabytes (see `store.py`).
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from cdr_connector.simulator.poison import POISON_KINDS

Row = tuple[int, ...]

# Positions of a Row's fields.
START = 0
DURATION = 1
BILLSEC = 2
EXT = 3
DEST = 4
DISPLAY = 5
DIRECTION = 6
CALLMETHOD = 7
USERID = 8
MEMBERID = 9
CHENGSHUDU = 10
CUSTOMUUID = 11
HANGUPDIRECTION = 12
HANGUPCAUSE = 13
USERKEY = 14
SHAPE = 15
ROW_WIDTH = 16

# `direction` as the GetBill filter numbers it.
CALLIN = 1
CALLOUT = 2

# SHAPE: 0 a well-formed bill, 1..len(POISON_KINDS) a malformed one (see poison.py).
WELL_FORMED = 0

T = TypeVar("T")


class Vocabulary:
    """Interned strings: every text field of a stored call is an index into `strings`."""

    def __init__(self) -> None:
        self.strings: list[str] = []
        self._codes: dict[str, int] = {}

    def code(self, text: str) -> int:
        found = self._codes.get(text)
        if found is None:
            found = len(self.strings)
            self.strings.append(text)
            self._codes[text] = found
        return found

    def lookup(self, text: str) -> int | None:
        return self._codes.get(text)


class _Weighted(Generic[T]):
    def __init__(self, table: Sequence[tuple[T, float]]) -> None:
        self._values = [value for value, _ in table]
        self._cumulative = list(itertools.accumulate(weight for _, weight in table))

    def pick(self, rng: random.Random) -> T:
        point = rng.random() * self._cumulative[-1]
        return self._values[bisect.bisect_right(self._cumulative, point)]


# Code table of README.md. Answered calls mostly clear normally; the rest spread over the
# reasons a call is not connected.
_ANSWERED_CAUSES = _Weighted([(10001, 90), (10007, 3), (10020, 4), (10031, 2), (10028, 1)])
_UNANSWERED_CAUSES = _Weighted(
    [
        (10002, 25),
        (10016, 22),
        (10006, 12),
        (10003, 8),
        (10005, 6),
        (10009, 5),
        (10004, 4),
        (10015, 3),
        (10008, 3),
        (10013, 2),
        (10011, 2),
        (10020, 2),
        (10017, 1),
        (10019, 1),
        (10012, 1),
        (10014, 1),
        (10024, 0.5),
        (10025, 0.5),
        (10027, 0.5),
        (10028, 0.5),
    ]
)
_HANGUP_DIRECTIONS = _Weighted([(10040, 48), (10041, 48), (10007, 4)])
_CALLMETHODS = _Weighted([(1, 5), (2, 20), (3, 30), (4, 10), (5, 15), (6, 20)])
_ANSWER_RATE = {1: 0.85, 2: 0.6, 3: 0.65, 4: 0.55, 5: 0.4, 6: 0.8}
# Custom fields (userid, memberid, ...) are set by calls placed through the API.
_API_METHODS = frozenset((3, 4, 5))

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超霞平刚"
_WESTERN = (
    "José García",
    "Zoë Brontë",
    "Björn Ångström",
    "François Côté",
    "Ana María Núñez",
    "Łukasz Wójcik",
    "Renée O'Brien",
    "Nguyễn Văn An",
    "Chloé Müller",
)
_MATURITY = ("A", "B", "C", "D", "高", "中", "低", "0")
_AREA_CODES = ("10", "20", "21", "755", "571")
_IVR_KEYS = (("1", 30), ("2", 20), ("3", 10), ("0", 15), ("#", 15), ("*", 5), ("", 5))

EXTENSION_COUNT = 50
CUSTOMER_COUNT = 5_000
TRUNK_COUNT = 8
MAX_TALK_SECONDS = 4 * 3600


@dataclass(frozen=True)
class Customer:
    number: int
    memberid: int
    chengshudu: int
    customuuid: int


@dataclass(frozen=True)
class Pools:
    """Everything calls are drawn from; the same seed gives the same pools."""

    vocabulary: Vocabulary
    empty: int
    zero: int
    extensions: tuple[int, ...]
    agents: tuple[int, ...]  # the userid of each extension's agent
    trunks: tuple[int, ...]
    customers: tuple[Customer, ...]
    ivr_keys: _Weighted[int]  # the key a caller pressed in the IVR (`userkey`)

    @staticmethod
    def build(seed: int) -> Pools:
        rng = random.Random(f"{seed}/pools")
        vocabulary = Vocabulary()
        code = vocabulary.code
        empty, zero = code(""), code("0")
        extensions = tuple(code(str(8001 + i)) for i in range(EXTENSION_COUNT))
        agents = tuple(code(_agent_name(rng, i)) for i in range(EXTENSION_COUNT))
        trunks = tuple(code(str(2190170001 + i)) for i in range(TRUNK_COUNT))
        customers = tuple(
            Customer(
                number=code(_phone_number(rng)),
                memberid=code(_member_id(rng)),
                chengshudu=code(rng.choice(_MATURITY)),
                customuuid=code(_customer_id(rng)),
            )
            for _ in range(CUSTOMER_COUNT)
        )
        ivr_keys = _Weighted([(code(key), weight) for key, weight in _IVR_KEYS])
        return Pools(vocabulary, empty, zero, extensions, agents, trunks, customers, ivr_keys)


def _chinese_name(rng: random.Random) -> str:
    return rng.choice(_SURNAMES) + "".join(rng.choices(_GIVEN, k=rng.randint(1, 2)))


def _agent_name(rng: random.Random, index: int) -> str:
    draw = rng.random()
    if draw < 0.4:
        return _chinese_name(rng)
    if draw < 0.6:
        return rng.choice(_WESTERN)
    return f"E{1001 + index}"


def _phone_number(rng: random.Random) -> str:
    if rng.random() < 0.85:
        return f"1{rng.choice('35789')}{rng.randrange(10**9):09d}"
    return f"0{rng.choice(_AREA_CODES)}{rng.randrange(10**8):08d}"


def _member_id(rng: random.Random) -> str:
    draw = rng.random()
    if draw < 0.1:
        return "0"
    if draw < 0.2:
        return f"会员{rng.randrange(10**5):05d}"
    return f"M{rng.randrange(10**7):07d}"


def _customer_id(rng: random.Random) -> str:
    draw = rng.random()
    if draw < 0.2:
        return f"客户-{_chinese_name(rng)}"
    if draw < 0.3:
        return rng.choice(_WESTERN)
    hex32 = f"{rng.getrandbits(128):032x}"
    return f"{hex32[:8]}-{hex32[8:12]}-{hex32[12:16]}-{hex32[16:20]}-{hex32[20:]}"


class CallFactory:
    """Draws calls from `pools` with its own random stream, so every stream (backlog, live,
    admin-generated) is reproducible from the seed on its own."""

    def __init__(self, pools: Pools, rng: random.Random) -> None:
        self._pools = pools
        self._rng = rng

    def call(self, visible_at: float, poison_rate: float = 0.0) -> Row:
        """A call whose record becomes visible at `visible_at` (unix seconds)."""
        rng, pools = self._rng, self._pools
        method = _CALLMETHODS.pick(rng)
        direction = CALLIN if method == 6 and rng.random() < 0.8 else CALLOUT
        agent = rng.randrange(EXTENSION_COUNT)
        customer = pools.customers[rng.randrange(CUSTOMER_COUNT)]
        ext = pools.extensions[agent]
        if method == 6 and rng.random() < 0.5:
            ext = pools.empty  # handled by the IVR or a ring group, no extension
        trunk = pools.trunks[rng.randrange(TRUNK_COUNT)]
        if direction == CALLIN:
            dest, display = trunk, customer.number
        elif method == 1:
            dest, display = pools.extensions[rng.randrange(EXTENSION_COUNT)], ext
        else:
            dest, display = customer.number, trunk

        answered = rng.random() < _ANSWER_RATE[method]
        ring = min(60, 1 + int(rng.expovariate(1 / 12)))
        # Talk time is lognormal: a median of about a minute, one call in ~1000 over an hour.
        talk = min(MAX_TALK_SECONDS, max(1, int(rng.lognormvariate(math.log(70), 1.25))))
        billsec = talk if answered else 0
        duration = ring + billsec
        # Most records are written back within seconds; a few are minutes late.
        writeback = rng.uniform(0, 3) if rng.random() < 0.97 else rng.uniform(60, 900)
        start = int(visible_at - writeback) - duration

        causes = _ANSWERED_CAUSES if answered else _UNANSWERED_CAUSES
        api = method in _API_METHODS
        zero = pools.zero
        shape = WELL_FORMED
        if poison_rate and rng.random() < poison_rate:
            shape = 1 + rng.randrange(len(POISON_KINDS))
        return (
            start,
            duration,
            billsec,
            ext,
            dest,
            display,
            direction,
            method,
            pools.agents[agent] if api else zero,
            customer.memberid if api else zero,
            customer.chengshudu if api else zero,
            customer.customuuid if api else zero,
            _HANGUP_DIRECTIONS.pick(rng),
            causes.pick(rng),
            pools.ivr_keys.pick(rng) if method == 6 else pools.empty,
            shape,
        )


def with_shape(row: Row, shape: int) -> Row:
    """`row` served the `shape` way (see SHAPE): how a poison kind is asked for by name."""
    return (*row[:SHAPE], shape, *row[SHAPE + 1 :])


def backlog(
    pools: Pools, seed: int, count: int, *, end: float, span: float, poison_rate: float
) -> Iterator[Row]:
    """`count` calls whose records became visible, in order, during the `span` seconds
    before `end`."""
    rng = random.Random(f"{seed}/backlog")
    factory = CallFactory(pools, rng)
    step = span / count if count else 0.0
    first = end - span
    for index in range(count):
        yield factory.call(first + (index + rng.random()) * step, poison_rate)
