"""Scenario 2: the Kafka broker stops for 30 s in the middle of a run and starts again, with its
data, while the vendor keeps making calls. The connector must neither exit nor lose what it
had fetched: the queue in front of the committer stops fetching within a round, and the
batches it holds are committed once the broker is back.

The suite's shared broker is never touched: this scenario runs its own, from a private run
directory on a free port. `deploy/dev/kafka.sh start` formats fresh storage on every start, so
the restart launches the broker process directly with the configuration and data that the
first start left (the same command line, so `kafka.sh stop` still recognises it).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdr_connector.simulator import running_simulator
from tests.faults.conftest import FaultReport
from tests.faults.scenarios import LONG, Scene, finish, read_back, simulator_config
from tests.integration.harness import Topics, free_port
from tests.kafka_helpers import check_reachable

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_SH = REPO_ROOT / "deploy" / "dev" / "kafka.sh"
CLASSPATH_FILE = REPO_ROOT / "deploy" / "dev" / ".cache" / "classpath.txt"
OUTAGE_SECONDS = 30.0
TRAFFIC_SECONDS = 20.0 if LONG else 4.0  # before and after the outage


class PrivateBroker:
    """A single-node broker of this test only (see the module docstring)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.port = _free_port_pair()
        self.bootstrap = f"127.0.0.1:{self.port}"

    def _script(self, command: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KAFKA_RUN_DIR": str(self.run_dir), "KAFKA_PORT": str(self.port)}
        return subprocess.run(
            ["bash", str(KAFKA_SH), command],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    def start(self) -> None:
        result = self._script("start")
        assert result.returncode == 0, f"private broker did not start:\n{result.stderr[-3000:]}"

    def stop(self) -> None:
        result = self._script("stop")
        assert result.returncode == 0, f"private broker did not stop:\n{result.stderr[-3000:]}"

    def restart_with_its_data(self) -> None:
        props = self.run_dir / "server.properties"
        assert (self.run_dir / "data" / "meta.properties").is_file(), "no data to restart with"
        env = {**os.environ, "CLASSPATH": CLASSPATH_FILE.read_text(encoding="utf-8").strip()}
        with (self.run_dir / "broker.out").open("ab") as out:
            process = subprocess.Popen(
                [
                    "java",
                    *os.environ.get("KAFKA_HEAP_OPTS", "-Xms256m -Xmx512m").split(),
                    "-XX:+UseG1GC",
                    "-XX:MaxGCPauseMillis=20",
                    "-XX:+ExitOnOutOfMemoryError",
                    "-Djava.awt.headless=true",
                    f"-Dlog4j2.configurationFile={self.run_dir / 'log4j2.properties'}",
                    f"-Dkafka.logs.dir={self.run_dir}",
                    "kafka.Kafka",
                    str(props),
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        (self.run_dir / "broker.pid").write_text(f"{process.pid}\n", encoding="utf-8")
        (self.run_dir / "broker.addr").write_text(f"{self.bootstrap}\n", encoding="utf-8")
        deadline = time.monotonic() + 120
        while (problem := check_reachable(self.bootstrap, timeout=5)) is not None:
            assert process.poll() is None, "the restarted broker exited"
            assert time.monotonic() < deadline, f"restarted broker not reachable: {problem}"
            time.sleep(0.5)


def _free_port_pair() -> int:
    """A free port whose successor (the controller's port) is free too."""
    while True:
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


@pytest.fixture
def private_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateBroker]:
    broker = PrivateBroker(tmp_path_factory.mktemp("kafka-run"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


async def test_a_30s_broker_outage_loses_and_repeats_nothing(
    private_broker: PrivateBroker, topics: Topics, tmp_path: Path, fault_report: FaultReport
) -> None:
    started = time.monotonic()
    config = simulator_config(seed=43, backlog=2000, rate=40.0)
    async with running_simulator(config) as sim:
        scene = Scene(private_broker.bootstrap, sim, topics, tmp_path)
        connector = scene.connector("connector")
        try:
            await connector.wait_ready()
            await asyncio.sleep(TRAFFIC_SECONDS)
            before = len((await read_back(scene.bootstrap, topics)).data)
            queried_at_stop = sim.state.stats()["records"]["queried"]
            await asyncio.to_thread(private_broker.stop)
            await asyncio.sleep(OUTAGE_SECONDS)  # the vendor keeps making calls meanwhile
            queried_in_outage = sim.state.stats()["records"]["queried"] - queried_at_stop
            assert connector.process.poll() is None, (
                f"the connector exited during the outage:\n{connector.output()[-3000:]}"
            )
            await asyncio.to_thread(private_broker.restart_with_its_data)
            await asyncio.sleep(TRAFFIC_SECONDS)
            outcome, _ = await finish(
                scene,
                connector,
                "2. Kafka broker down 30 s",
                started,
                note=f"{queried_in_outage} fetched during the outage",
                timeout=180,
            )
        finally:
            connector.kill()
    fault_report.add(outcome)
    outcome.assert_clean()
    assert before >= 2000, "the outage must come after the backlog was committed"
    output = connector.output()
    noticed = ("commit_transaction failed", "transaction of")
    assert any(text in output for text in noticed), "the connector never saw the outage"
    assert outcome.made > before + OUTAGE_SECONDS * 20, "traffic went on during the outage"
    # The committer's queue holds at most two batches: fetching stops within a few rounds
    # instead of taking every new record from the vendor while they cannot be stored.
    assert queried_in_outage < OUTAGE_SECONDS * config.rate / 4, queried_in_outage
