"""A single-node Kafka broker of one test only, for scenarios that stop and restart the broker:
the suite's shared broker is never touched. It runs from a private run directory on a free
port. `deploy/dev/kafka.sh start` formats fresh storage on every start, so the restart launches
the broker process directly with the configuration and data that the first start left (the
same command line, so `kafka.sh stop` still recognises it)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.integration.harness import free_port
from tests.kafka_helpers import check_reachable

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_SH = REPO_ROOT / "deploy" / "dev" / "kafka.sh"
CLASSPATH_FILE = REPO_ROOT / "deploy" / "dev" / ".cache" / "classpath.txt"
_START_SECONDS = 120.0
_EXEC_RACE = "the broker exited during start-up"


class PrivateBroker:
    """A single-node broker of one test only (see the module docstring)."""

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
        if result.returncode != 0 and _EXEC_RACE in result.stderr:
            # kafka.sh looks at its background job's pid before `setsid` has become `java`;
            # on a busy machine that window is long enough for the check to see no broker,
            # and the script gives up while the broker goes on starting. Wait for the broker
            # itself (`kafka.sh stop` finds it by its command line).
            self._wait_reachable(lambda: True, "broker")
            return
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
        self._wait_reachable(lambda: process.poll() is None, "restarted broker")

    def _wait_reachable(self, alive: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + _START_SECONDS
        while (problem := check_reachable(self.bootstrap, timeout=5)) is not None:
            assert alive(), f"the {what} exited"
            assert time.monotonic() < deadline, f"{what} not reachable: {problem}"
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
