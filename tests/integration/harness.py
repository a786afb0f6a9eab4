"""Runs the connector as a real process against the real simulator and the real broker, and
reads back what it committed."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import fastavro
from confluent_kafka import Message

from cdr_connector.simulator import SimulatorConfig, connecting
from cdr_connector.simulator.connecting import Topics
from tests.kafka_helpers import consume_all

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = REPO_ROOT / "schemas" / "cdr_record.avsc"
SINGLE_OBJECT_HEADER = 10  # C3 01 + 8-byte fingerprint


APPID = "test-appid"
ACCESSKEY = "test-accesskey-s3cr3t"
PBX_ZONE = "Asia/Shanghai"


def simulator_config(**overrides: Any) -> SimulatorConfig:
    """A simulator that accepts `connector_env`'s credentials, quiet unless told otherwise,
    with a backlog well inside the connector's lookback window."""
    settings: dict[str, Any] = {
        "appid": APPID,
        "accesskey": ACCESSKEY,
        "timezone": PBX_ZONE,
        "rate": 0.0,
        "backlog_span": 3600.0,
        **overrides,
    }
    return SimulatorConfig(**settings)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# What this suite adds to every connector: short poll, retry and sweep intervals and short
# timeouts, so that a run takes seconds; three partitions, so that keys spread over several.
TEST_SETTINGS = {
    "CDR_SOURCE__REQUEST_TIMEOUT_SECONDS": "5",
    "CDR_KAFKA__PARTITIONS": "3",
    "CDR_KAFKA__OPERATION_TIMEOUT_SECONDS": "15",
    "CDR_POLL__INTERVAL_SECONDS": "0.5",
    "CDR_POLL__RETRY_INITIAL_SECONDS": "0.05",
    "CDR_POLL__RETRY_MAX_SECONDS": "0.5",
    "CDR_POLL__SWEEP_INTERVAL_SECONDS": "3",
    "CDR_SHUTDOWN_TIMEOUT_SECONDS": "20",
}


def connector_env(
    bootstrap: str, api_url: str, topics: Topics, *, source: str, http_port: int, **extra: str
) -> dict[str, str]:
    """The shared settings of a connector against the simulator (connecting.py) with this
    suite's credentials and TEST_SETTINGS; `extra` (CDR_ names) overrides any of them."""
    return connecting.connector_env(
        bootstrap,
        api_url,
        topics,
        source=source,
        http_port=http_port,
        appid=APPID,
        accesskey=ACCESSKEY,
        **(TEST_SETTINGS | extra),
    )


class ConnectorProcess:
    """`python -m cdr_connector run` in a child process, its output in a log file."""

    def __init__(
        self, env: dict[str, str], log_path: Path, command: tuple[str, ...] = ("run",)
    ) -> None:
        self.env = env
        self.log_path = log_path
        self.http_port = int(env["CDR_HTTP__PORT"])
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cdr_connector", *command],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )

    async def wait_ready(self, timeout: float = 60.0) -> None:
        url = f"http://127.0.0.1:{self.http_port}/readyz"
        async with aiohttp.ClientSession() as session:
            await wait_until_ok(
                session,
                url,
                what="connector",
                process=self.process,
                output=self.output,
                timeout=timeout,
            )

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    async def wait_exit(self, timeout: float = 60.0) -> int:
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                self.process.kill()
                raise AssertionError(f"connector did not exit within {timeout}s:\n{self.output()}")
            await asyncio.sleep(0.1)
        self._log.close()
        return self.process.returncode

    async def stop(self) -> int:
        if self.process.poll() is None:
            self.signal(signal.SIGTERM)
        return await self.wait_exit()

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()


def load_schema() -> Any:
    return fastavro.parse_schema(json.loads(SCHEMA_FILE.read_text(encoding="utf-8")))


def decode_single_object(value: bytes, schema: Any) -> dict[str, Any]:
    """Decode with the schema file itself, not with the connector's decoder."""
    assert value[:2] == b"\xc3\x01", value[:10]
    from io import BytesIO

    record: dict[str, Any] = fastavro.schemaless_reader(
        BytesIO(value[SINGLE_OBJECT_HEADER:]), schema, None
    )
    return record


async def metrics_text(connector: ConnectorProcess) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{connector.http_port}/metrics") as response,
    ):
        assert response.status == 200
        return await response.text()


def metric_total(text: str, name: str, label: str = "") -> float:
    """Sum of the samples of `name` on a Prometheus text page, over every label set or those
    that contain `label` (such as 'mode="live"')."""
    total = 0.0
    for line in text.splitlines():
        if (line.startswith(name + "{") or line.startswith(name + " ")) and label in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def wait_for_records(
    bootstrap: str, topic: str, expected: int, *, timeout: float = 90.0
) -> list[Message]:
    """Read the topic with read_committed until it holds `expected` messages (or more)."""
    deadline = time.monotonic() + timeout
    messages: list[Message] = []
    while time.monotonic() < deadline:
        try:
            messages = await asyncio.to_thread(consume_all, bootstrap, topic)
        except AssertionError:  # the connector has not created the topic yet
            await asyncio.sleep(0.5)
            continue
        if len(messages) >= expected:
            return messages
        await asyncio.sleep(0.5)
    raise AssertionError(f"{topic}: {len(messages)} of {expected} records after {timeout}s")


async def simulator_records(admin_url: str, account: str | None = None) -> list[dict[str, Any]]:
    """Every record the simulator made visible, as GetBill renders it; of the account with
    appid `account` when the simulator serves several."""
    records: list[dict[str, Any]] = []
    after = 0
    async with aiohttp.ClientSession() as session:
        while True:
            query: dict[str, str | int] = {"after_id": after, "limit": 10000}
            if account is not None:
                query["account"] = account
            async with session.get(f"{admin_url}records", params=query) as response:
                body = await response.json()
            if not body["records"]:
                return records
            records.extend(body["records"])
            after = body["next_after_id"]


async def admin_post(admin_url: str, path: str, payload: Any) -> Any:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{admin_url}{path}", json=payload) as response,
    ):
        assert response.status == 200, await response.text()
        return await response.json()


def header(message: Message, name: str) -> str | None:
    for key, value in message.headers() or []:
        if key == name:
            return bytes(value).decode()
    return None


def assert_exactly_once(messages: list[Message], expected_ids: set[int]) -> None:
    counts = Counter(int(header(m, "cdr.id") or -1) for m in messages)
    duplicated = {i: c for i, c in counts.items() if c > 1}
    missing = expected_ids - counts.keys()
    unexpected = counts.keys() - expected_ids
    assert not duplicated, f"{len(duplicated)} ids twice or more, e.g. {list(duplicated)[:5]}"
    assert not missing, f"{len(missing)} ids lost, e.g. {sorted(missing)[:5]}"
    assert not unexpected, f"ids nobody made: {sorted(unexpected)[:5]}"


def assert_extension_order(messages: list[Message]) -> None:
    """Within a partition, records of one key come in increasing id order."""
    last: dict[tuple[int, bytes], int] = {}
    for message in messages:
        key = (message.partition(), message.key() or b"")
        record_id = int(header(message, "cdr.id") or -1)
        assert last.get(key, -1) < record_id, f"key {key} went back to id {record_id}"
        last[key] = record_id


async def wait_until_ok(
    session: aiohttp.ClientSession,
    url: str,
    *,
    what: str,
    process: subprocess.Popen[bytes],
    output: Callable[[], str],
    timeout: float,
) -> None:
    """Poll `url` until it answers 200; fail with the process's output if the process exits
    first or the timeout passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{what} exited early:\n{output()}")
        try:
            async with session.get(url) as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what} not ready within {timeout}s:\n{output()}")
