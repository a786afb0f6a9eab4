"""Shutdown stays within its bound even when Kafka has gone away mid-run."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdr_connector.simulator import running_simulator
from tests.integration.harness import (
    REPO_ROOT,
    ConnectorProcess,
    Topics,
    connector_env,
    free_port,
    simulator_config,
)

KAFKA_SH = REPO_ROOT / "deploy" / "dev" / "kafka.sh"


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A broker of this test's own, so stopping it disturbs no other test."""
    env = {**os.environ, "KAFKA_RUN_DIR": str(tmp_path / "kafka"), "KAFKA_PORT": str(free_port())}
    started = subprocess.run(
        ["bash", str(KAFKA_SH), "start"],
        env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    try:
        yield started.stdout.strip().splitlines()[-1], env
    finally:
        subprocess.run(["bash", str(KAFKA_SH), "stop"], env=env, timeout=120, check=True)


async def test_sigterm_while_kafka_is_down_exits_0_within_the_bound(
    private_broker: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    bootstrap, broker_env = private_broker
    topics = Topics("cdr", "cdr.dlq", "cdr.state")
    config = simulator_config(rate=50.0, backlog=100)
    async with running_simulator(config) as sim:
        env = connector_env(bootstrap, sim.url, topics, source="bounded", http_port=free_port())
        env["CDR_SHUTDOWN_TIMEOUT_SECONDS"] = "5"
        process = ConnectorProcess(env, tmp_path / "connector.log")
        try:
            await process.wait_ready()
            await asyncio.to_thread(
                subprocess.run, ["bash", str(KAFKA_SH), "stop"], env=broker_env, check=True
            )
            await asyncio.sleep(3)  # live records keep coming; their transaction cannot commit
            began = time.monotonic()
            process.signal(signal.SIGTERM)
            assert await process.wait_exit(30) == 0
            took = time.monotonic() - began
        finally:
            process.kill()
    assert took < 5 + 5, f"shutdown took {took:.1f}s for a bound of 5s"
    assert "shutdown did not finish within 5s" in process.output()
