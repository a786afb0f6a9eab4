"""The settings of a connector process pointed at a simulator and a broker on this machine, as
the CDR_ environment variables `Settings` reads (cdr_connector/config.py).

The integration tests and the benchmarks both start connectors this way; each adds its own
settings on top (the tests' short poll and retry intervals, the benchmarks' quieter log), so
that the part every such connector needs is written once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    """The three topics of one connector: records, dead letters, committed state."""

    data: str
    dead_letter: str
    state: str

    @classmethod
    def named(cls, prefix: str) -> Topics:
        return cls(f"{prefix}.calls", f"{prefix}.calls.dlq", f"{prefix}.state")


def connector_env(
    bootstrap: str,
    api_url: str,
    topics: Topics,
    *,
    source: str,
    http_port: int,
    appid: str,
    accesskey: str,
    **extra: str,
) -> dict[str, str]:
    """`appid` and `accesskey` are the ones the simulator was started with.

    This process's environment without any CDR_ variable of its own (so that a setting
    exported in the caller's shell cannot leak into a run), then the connector's settings,
    then `extra` (CDR_ names, overriding any of them).

    Topics are created by the connector with one replica (a single local broker); the
    operations port listens on 127.0.0.1 only; logs are JSON lines, for reading back.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("CDR_")}
    env.update(
        {
            "CDR_SOURCE__NAME": source,
            "CDR_SOURCE__API_URL": api_url,
            "CDR_SOURCE__APPID": appid,
            "CDR_SOURCE__ACCESSKEY": accesskey,
            "CDR_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
            "CDR_KAFKA__TOPIC": topics.data,
            "CDR_KAFKA__DEAD_LETTER_TOPIC": topics.dead_letter,
            "CDR_KAFKA__STATE_TOPIC": topics.state,
            "CDR_KAFKA__CREATE_TOPICS": "true",
            "CDR_KAFKA__REPLICATION_FACTOR": "1",
            "CDR_HTTP__HOST": "127.0.0.1",
            "CDR_HTTP__PORT": str(http_port),
            "CDR_LOG__FORMAT": "json",
        }
    )
    env.update(extra)
    return env
