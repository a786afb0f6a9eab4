"""Shared pytest plumbing.

Kafka: tests that need a broker take the ``kafka_bootstrap`` fixture (directly or through
``admin``). The broker comes from ``--kafka-bootstrap-servers`` or ``CDR_TEST_KAFKA_BOOTSTRAP``;
without either, the session starts the local dev broker with ``deploy/dev/kafka.sh start`` and
stops it again at the end if it was the one that started it. No broker means the test fails:
Kafka tests never skip.

asyncio: every test fails at teardown if an asyncio task or callback died with an exception
that nobody retrieved (see ``loop_errors``).
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from tests.dev_services import local_service
from tests.kafka_helpers import check_reachable, unique_name

# The schema registry's fixture, `schema_registry_url`, started the way the broker is.
pytest_plugins = ("tests.schema_registry",)

REPO_ROOT = Path(__file__).resolve().parent.parent
KAFKA_SH = REPO_ROOT / "deploy" / "dev" / "kafka.sh"
BOOTSTRAP_OPTION = "--kafka-bootstrap-servers"
BOOTSTRAP_ENV = "CDR_TEST_KAFKA_BOOTSTRAP"
REACHABLE_TIMEOUT = 10.0
KAFKA_SH_START_TIMEOUT = 300.0  # includes resolving the jars with Maven on a fresh machine
KAFKA_SH_STOP_TIMEOUT = 120.0


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        BOOTSTRAP_OPTION,
        action="store",
        default=None,
        metavar="HOST:PORT",
        help=(
            "Kafka bootstrap servers for the tests (overrides $CDR_TEST_KAFKA_BOOTSTRAP); "
            "without either, deploy/dev/kafka.sh starts a local broker"
        ),
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses the broker carries the ``kafka`` marker (for ``-m 'not kafka'``)."""
    for item in items:
        if "kafka_bootstrap" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kafka)


# --- Kafka -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest) -> Iterator[str]:
    """Bootstrap servers (``host:port``) of a Kafka broker that answers; fails the test if none."""
    given = request.config.getoption(BOOTSTRAP_OPTION) or os.environ.get(BOOTSTRAP_ENV, "").strip()
    with ExitStack() as services:
        if given:
            bootstrap = given
            source = (
                BOOTSTRAP_OPTION if request.config.getoption(BOOTSTRAP_OPTION) else BOOTSTRAP_ENV
            )
        else:
            bootstrap = services.enter_context(
                local_service(
                    KAFKA_SH,
                    what="Kafka broker",
                    start_timeout=KAFKA_SH_START_TIMEOUT,
                    stop_timeout=KAFKA_SH_STOP_TIMEOUT,
                    instead=f"or point the tests at a broker with {BOOTSTRAP_OPTION} / "
                    f"${BOOTSTRAP_ENV}",
                )
            )
            source = str(KAFKA_SH.relative_to(REPO_ROOT))
        problem = check_reachable(bootstrap, timeout=REACHABLE_TIMEOUT)
        if problem is not None:
            pytest.fail(
                f"Kafka broker {bootstrap} (from {source}) is not usable: {problem}", pytrace=False
            )
        yield bootstrap


@pytest.fixture(scope="session")
def admin(kafka_bootstrap: str) -> AdminClient:
    """An AdminClient on the test broker, shared by the session."""
    return AdminClient({"bootstrap.servers": kafka_bootstrap})


@pytest.fixture
def unique_topic() -> Callable[..., str]:
    """Factory ``(prefix="t") -> str``: a fresh, unused topic name on every call."""

    def make(prefix: str = "t") -> str:
        return unique_name(prefix)

    return make


# --- asyncio -----------------------------------------------------------------------------


class _AsyncioErrorRecorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _describe(record: logging.LogRecord) -> str:
    text = record.getMessage()
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        text += f"\n    {type(exc).__name__}: {exc}"
    return text


@pytest.fixture(autouse=True)
def loop_errors() -> Iterator[list[logging.LogRecord]]:
    """Fail the test if an event loop reported an exception nobody handled.

    Whatever event loop a test runs on (pytest-asyncio's loop of any scope, or one the test
    makes itself), an exception that escapes a callback, or that a task or future was never
    asked for, reaches the loop's exception handler; the default handler reports it on the
    ``asyncio`` logger. This records those reports for the duration of the test and collects
    garbage at teardown (tasks report unretrieved exceptions when they are freed), after
    pytest-asyncio has closed a function-scoped loop. A test that provokes such an error on
    purpose takes this fixture and clears the returned list.
    """
    recorder = _AsyncioErrorRecorder()
    asyncio_logger = logging.getLogger("asyncio")
    saved_level = asyncio_logger.level
    if asyncio_logger.getEffectiveLevel() > logging.ERROR:
        asyncio_logger.setLevel(logging.ERROR)
    asyncio_logger.addHandler(recorder)
    try:
        yield recorder.records
        gc.collect()
    finally:
        asyncio_logger.removeHandler(recorder)
        asyncio_logger.setLevel(saved_level)
    if recorder.records:
        details = "\n".join(f"  - {_describe(r)}" for r in recorder.records)
        pytest.fail(
            f"an asyncio task or callback failed with an exception nobody handled:\n{details}",
            pytrace=False,
        )
