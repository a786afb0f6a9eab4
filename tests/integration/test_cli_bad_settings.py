"""A bad setting stops `run` and `check` with one line naming it and exit status 2.

Each case runs the real command line in a child process, with its settings in CDR_ variables,
the way an operator meets it: no traceback, nothing on stdout, one line on stderr that names the
key (or the variable) at fault. The vendor API and Kafka addresses point at a closed port, so a
setting that slipped through validation fails the test quickly instead of waiting for a server.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.integration.harness import free_port

# Every case is refused while the settings are loaded, before any connection is made.
TIMEOUT_SECONDS = 60


def base_environment() -> dict[str, str]:
    closed = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("CDR_")}
    env.update(
        CDR_SOURCE__APPID="a",
        CDR_SOURCE__ACCESSKEY="k",
        CDR_SOURCE__API_URL=f"http://127.0.0.1:{closed}/",
        CDR_KAFKA__BOOTSTRAP_SERVERS=f"127.0.0.1:{closed}",
        CDR_KAFKA__OPERATION_TIMEOUT_SECONDS="1",
        CDR_POLL__MAX_ATTEMPTS="1",
        CDR_HTTP__PORT="0",
    )
    return env


CASES = {
    "unknown client_config property": (
        {"CDR_KAFKA__CLIENT_CONFIG": '{"bogus.property": "1"}'},
        ["kafka.client_config", "bogus.property"],
    ),
    "SASL_SSL without a mechanism": (
        {"CDR_KAFKA__CLIENT_CONFIG": '{"security.protocol": "SASL_SSL"}'},
        ["kafka.client_config", "sasl.mechanism"],
    ),
    "invalid client_config value": (
        {"CDR_KAFKA__CLIENT_CONFIG__SECURITY.PROTOCOL": "s3cret-in-wrong-place"},
        ["kafka.client_config", "security.protocol"],
    ),
    "transaction timeout past librdkafka's range": (
        {"CDR_KAFKA__TRANSACTION_TIMEOUT_SECONDS": "1e9"},
        ["kafka.transaction_timeout_seconds", "at most 900"],
    ),
    "lookback of 1e12 seconds": (
        {"CDR_POLL__LOOKBACK_SECONDS": "1e12"},
        ["poll.lookback_seconds", "at most 2592000"],
    ),
    "infinite lookback": (
        {"CDR_POLL__LOOKBACK_SECONDS": "inf"},
        ["poll.lookback_seconds", "at most 2592000"],
    ),
    "http.host that is no address": (
        {"CDR_HTTP__HOST": "256.1.1.1"},
        ["http.host", "IP address or a host name"],
    ),
    "malformed JSON in a section variable": (
        {"CDR_POLL": '{"concurrency": 2'},
        ["CDR_POLL", "not valid JSON"],
    ),
    "malformed JSON in a nested variable": (
        {"CDR_KAFKA__CLIENT_CONFIG": "{sasl.mechanism: PLAIN}"},
        ["CDR_KAFKA__CLIENT_CONFIG", "not valid JSON"],
    ),
}


@pytest.mark.parametrize("command", ["run", "check"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_setting_is_one_line_naming_it_and_exit_status_2(case: str, command: str) -> None:
    variables, expected = CASES[case]
    result = subprocess.run(
        [sys.executable, "-m", "cdr_connector", command],
        env={**base_environment(), **variables},
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("cdr-connector: invalid settings: "), lines[0]
    for text in expected:
        assert text in lines[0]
    assert "Traceback" not in result.stderr
    assert "config file" not in lines[0]
    assert "s3cret" not in lines[0], "a value is never echoed"
    assert result.stdout == ""
