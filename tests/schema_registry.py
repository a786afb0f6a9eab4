"""The schema registry of the tests (a pytest plugin; tests/conftest.py loads it).

Tests that need a Confluent-compatible registry take ``schema_registry_url``: the URL of its
Confluent API, as `avro.schema_registry_url` takes it. It comes from ``CDR_TEST_REGISTRY_URL``
(scripts/test.sh exports it); without it, the session starts the local dev registry with
``deploy/dev/registry.sh start`` and stops it again at the end if it was the one that started
it. No registry means the test fails: registry tests never skip.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.dev_services import local_service

REPO_ROOT = Path(__file__).resolve().parent.parent
REGISTRY_SH = REPO_ROOT / "deploy" / "dev" / "registry.sh"
REGISTRY_ENV = "CDR_TEST_REGISTRY_URL"
CONFLUENT_API = "/apis/ccompat/v7"
# Includes fetching the registry with Maven on a fresh machine.
REGISTRY_SH_START_TIMEOUT = 600.0
REGISTRY_SH_STOP_TIMEOUT = 60.0
REACHABLE_TIMEOUT = 10.0


def _problem_reaching(url: str) -> str | None:
    try:
        with urllib.request.urlopen(f"{url}/subjects", timeout=REACHABLE_TIMEOUT) as answer:
            answer.read()
    except (urllib.error.URLError, OSError) as exc:
        return str(exc)
    return None


@pytest.fixture(scope="session")
def schema_registry_url() -> Iterator[str]:
    """The Confluent API of a schema registry that answers; fails the test if there is none."""
    given = os.environ.get(REGISTRY_ENV, "").strip().rstrip("/")
    with ExitStack() as services:
        url, source = given, f"${REGISTRY_ENV}"
        if not given:
            base = services.enter_context(
                local_service(
                    REGISTRY_SH,
                    what="schema registry",
                    start_timeout=REGISTRY_SH_START_TIMEOUT,
                    stop_timeout=REGISTRY_SH_STOP_TIMEOUT,
                    instead=f"or name a registry's Confluent API with ${REGISTRY_ENV}",
                )
            )
            url, source = base + CONFLUENT_API, str(REGISTRY_SH.relative_to(REPO_ROOT))
        problem = _problem_reaching(url)
        if problem is not None:
            pytest.fail(
                f"schema registry {url} (from {source}) does not answer: {problem}", pytrace=False
            )
        yield url
