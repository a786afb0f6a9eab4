"""Scenario 8: bad configuration and refused credentials at start. Each case ends with one
clear error, a non-zero exit, and nothing written: no record taken from the vendor (they all
stay unqueried), no record or state in Kafka."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from cdr_connector.simulator import running_simulator
from tests.faults.conftest import FaultReport
from tests.faults.scenarios import ACCESSKEY, Outcome, Scene, simulator_config
from tests.integration.harness import Topics, free_port
from tests.kafka_helpers import consume_all

BACKLOG = 500
CASES = {
    "page size out of range": (
        {"CDR_POLL__PAGE_SIZE": "5000"},
        2,
        "poll.page_size",
    ),
    "unknown setting": ({"CDR_POLL__PAGESIZE": "100"}, 2, "is not a known setting"),
    "exactly-once setting overridden": (
        {"CDR_KAFKA__CLIENT_CONFIG": '{"enable.idempotence": "false"}'},
        2,
        "enable.idempotence cannot be overridden",
    ),
    "unreadable CA file": (
        {"CDR_SOURCE__CA_FILE": "/nonexistent/ca.pem"},
        2,
        "source.ca_file",
    ),
    "wrong access key": (
        {"CDR_SOURCE__ACCESSKEY": "not-the-key"},
        1,
        "appid not authorised",
    ),
}
# An unreachable vendor API or Kafka is not a bad start: the connector waits, alive and unready
# (tests/integration/test_startup_waits.py).


@pytest.mark.parametrize("case", list(CASES))
async def test_a_bad_start_is_a_clear_error_a_non_zero_exit_and_nothing_written(
    case: str,
    *,
    kafka_bootstrap: str,
    topics: Topics,
    admin: AdminClient,
    tmp_path: Path,
    fault_report: FaultReport,
) -> None:
    template, expected_exit, expected_text = CASES[case]
    closed_port = str(free_port())
    settings = {
        name: value.replace("{closed_port}", closed_port) for name, value in template.items()
    }
    started = time.monotonic()
    async with running_simulator(simulator_config(seed=71, backlog=BACKLOG, rate=0.0)) as sim:
        scene = Scene(kafka_bootstrap, sim, topics, tmp_path)
        connector = scene.connector(
            "connector",
            CDR_POLL__MAX_ATTEMPTS="3",
            CDR_KAFKA__OPERATION_TIMEOUT_SECONDS="5",
            **settings,
        )
        try:
            code = await connector.wait_exit(120)
        finally:
            connector.kill()
        records = sim.state.stats()["records"]
    output = connector.output()
    existing = admin.list_topics(timeout=10).topics
    written = {
        topic: len(consume_all(kafka_bootstrap, topic)) if topic in existing else 0
        for topic in (topics.data, topics.dead_letter, topics.state)
    }
    fault_report.add(
        Outcome(
            scenario=f"8. bad start: {case}",
            made=BACKLOG,
            committed=sum(written.values()),
            lost=records["queried"],  # taken from the vendor without being stored
            seconds=time.monotonic() - started,
            note=f"exit {code}",
        )
    )
    assert code == expected_exit, output
    assert expected_text in output, output
    assert "Traceback" not in output, output
    lines = output.splitlines()
    # One error line at the end; before it only JSON log lines (no raw librdkafka lines).
    assert lines[-1].startswith("cdr-connector: "), output
    assert all(line.startswith("{") for line in lines[:-1]), output
    assert ACCESSKEY not in output
    assert records["queried"] == 0, "no record may be taken from the vendor"
    assert written == dict.fromkeys(written, 0)
