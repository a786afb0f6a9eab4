"""How the Confluent encoder finds its schema id: registered, looked up, or the latest version.

Against confluent-kafka's in-memory `mock://` registry (each test its own); the same modes run
against a real registry in tests/integration/test_connector_confluent.py.
"""

from __future__ import annotations

import json
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from cdr_connector import avro
from cdr_connector.config import AvroSettings, load_settings
from cdr_connector.errors import ConfigError

AVSC = Path(__file__).resolve().parents[2] / "schemas" / "cdr_record.avsc"
TOPIC = "cdr.calls"
SUBJECT = avro.subject_for(TOPIC)
_registries = count()


def fresh_registry() -> SchemaRegistryClient:
    """An empty in-memory registry; every client of `mock://` keeps its own store."""
    return SchemaRegistryClient.new_client({"url": f"mock://lookup-{next(_registries)}"})


def registered_by_an_admin(registry: SchemaRegistryClient, text: str | None = None) -> int:
    return registry.register_schema(SUBJECT, Schema(text or AVSC.read_text(), "AVRO"))


def other_version() -> str:
    """Our schema with one more optional field: compatible, but another schema."""
    schema = json.loads(AVSC.read_text())
    schema["fields"].append({"name": "added", "type": ["null", "string"], "default": None})
    return json.dumps(schema)


def test_lookup_only_takes_the_id_the_subject_already_has() -> None:
    registry = fresh_registry()
    schema_id = registered_by_an_admin(registry)
    registered_by_an_admin(registry, other_version())  # a newer version does not hide ours

    encoder = avro.ConfluentEncoder.look_up(registry, TOPIC)

    assert encoder.schema_id == schema_id
    assert encoder.header == b"\x00" + schema_id.to_bytes(4, "big")


def test_lookup_only_refuses_a_missing_subject_and_registers_nothing() -> None:
    registry = fresh_registry()

    with pytest.raises(avro.SchemaNotRegisteredError) as caught:
        avro.ConfluentEncoder.look_up(registry, TOPIC)

    message = str(caught.value)
    assert f"cannot look up subject {SUBJECT!r}" in message
    assert "avro.auto_register_schemas is false" in message
    assert avro.load_schema().fingerprint_hex in message
    assert registry.get_subjects() == []


def test_lookup_only_refuses_a_subject_without_our_schema() -> None:
    registry = fresh_registry()
    registered_by_an_admin(registry, other_version())

    with pytest.raises(avro.SchemaNotRegisteredError, match="has no version with this connector"):
        avro.ConfluentEncoder.look_up(registry, TOPIC)


def test_latest_version_takes_the_latest_id_when_it_is_our_schema() -> None:
    registry = fresh_registry()
    registered_by_an_admin(registry, other_version())
    schema_id = registered_by_an_admin(registry)

    encoder = avro.ConfluentEncoder.latest(registry, TOPIC)

    assert encoder.schema_id == schema_id


def test_latest_version_refuses_a_latest_version_that_is_not_our_schema() -> None:
    """Values are written with our schema: an id naming another one would mislead readers."""
    registry = fresh_registry()
    registered_by_an_admin(registry)
    registered_by_an_admin(registry, other_version())

    with pytest.raises(avro.SchemaRegistrationError) as caught:
        avro.ConfluentEncoder.latest(registry, TOPIC)

    message = str(caught.value)
    assert "latest version (2, schema id" in message
    assert "is not this connector's schema" in message
    assert "avro.use_latest_version = false" in message


def test_latest_version_refuses_a_missing_subject() -> None:
    with pytest.raises(avro.SchemaNotRegisteredError, match="read the latest version of subject"):
        avro.ConfluentEncoder.latest(fresh_registry(), TOPIC)


@pytest.mark.parametrize(
    ("settings", "refusal"),
    [
        ({"auto_register_schemas": False}, "cannot look up subject"),
        (
            {"auto_register_schemas": False, "use_latest_version": True},
            "cannot read the latest version of subject",
        ),
    ],
)
def test_the_settings_choose_the_mode(settings: dict[str, Any], refusal: str) -> None:
    url = f"mock://settings-{next(_registries)}"
    assert isinstance(
        avro.encoder_for(AvroSettings(schema_registry_url=url), TOPIC), avro.ConfluentEncoder
    )

    with pytest.raises(avro.SchemaNotRegisteredError, match=refusal):
        avro.encoder_for(AvroSettings(schema_registry_url=url, **settings), TOPIC)


def test_latest_version_with_registration_on_is_a_bad_setting() -> None:
    with pytest.raises(ConfigError, match="use_latest_version needs auto_register_schemas = false"):
        load_settings(source={"appid": "a", "accesskey": "k"}, avro={"use_latest_version": True})


def test_lookup_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDR_AVRO__AUTO_REGISTER_SCHEMAS", "false")
    monkeypatch.setenv("CDR_AVRO__USE_LATEST_VERSION", "true")

    avro = load_settings(source={"appid": "a", "accesskey": "k"}).avro

    assert (avro.auto_register_schemas, avro.use_latest_version) == (False, True)


# --- what the registry's refusals become --------------------------------------------------------


class _AnsweringRegistry:
    """Refuses every request with `error`; says its compatibility level when asked."""

    def __init__(self, error: Exception, compatibility: str | None = None) -> None:
        self._error = error
        self._compatibility = compatibility

    def register_schema(self, subject: str, schema: Any) -> int:
        raise self._error

    def lookup_schema(self, subject: str, schema: Any) -> Any:
        raise self._error

    def get_compatibility(self, subject: str | None = None) -> str:
        if self._compatibility is None:
            raise SchemaRegistryError(404, 40401, "no config")
        return self._compatibility


def test_an_incompatible_schema_names_the_compatibility_rule() -> None:
    registry = _AnsweringRegistry(SchemaRegistryError(409, 409, "diffs: id"), "BACKWARD")

    with pytest.raises(avro.SchemaRegistrationError) as caught:
        avro.ConfluentEncoder.register(registry, TOPIC)  # type: ignore[arg-type]

    message = str(caught.value)
    assert "incompatible with the subject's latest version under its BACKWARD compat" in message
    assert "diffs: id" in message


def test_an_incompatible_schema_without_a_known_rule_still_says_so() -> None:
    registry = _AnsweringRegistry(SchemaRegistryError(409, 409, "diffs"))

    with pytest.raises(avro.SchemaRegistrationError) as caught:
        avro.ConfluentEncoder.register(registry, TOPIC)  # type: ignore[arg-type]

    assert "incompatible with the subject's latest version under its compatibility rule" in str(
        caught.value
    )


def test_a_404_that_is_no_registry_answer_points_at_the_url() -> None:
    registry = _AnsweringRegistry(SchemaRegistryError(404, -1, "<html>Not Found</html>"))

    with pytest.raises(avro.SchemaRegistrationError) as caught:
        avro.ConfluentEncoder.look_up(registry, TOPIC)  # type: ignore[arg-type]

    assert not isinstance(caught.value, avro.SchemaNotRegisteredError)
    assert "/apis/ccompat/v7" in str(caught.value)
