"""Records -> Avro bytes in both wire formats, checked by readers that share no code with ours.

The single-object header is checked against a CRC-64-AVRO computed here from the Avro
specification, and bodies are decoded with Apache's `avro` package reading the .avsc file.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import avro.io
import avro.schema
import fastavro
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from cdr_connector.avro import (
    AvroDecodeError,
    ConfluentEncoder,
    FastavroNotCompiledError,
    SchemaRegistrationError,
    SchemaRegistryUnavailableError,
    SingleObjectEncoder,
    assert_compiled_fastavro,
    build_encoder,
    decode,
    encoder_for,
    load_schema,
    load_schema_text,
    registry_client,
)
from cdr_connector.config import AvroSettings, Settings
from cdr_connector.errors import RecordError
from cdr_connector.records import normalise
from tests.unit.test_records import answered, context
from tests.vendor_doc import EXAMPLE_RESPONSE

AVSC = Path(__file__).resolve().parents[2] / "schemas" / "cdr_record.avsc"
TOPIC = "cdr.calls"

# --- an independent CRC-64-AVRO and Parsing Canonical Form, from the Avro specification -------

_EMPTY64 = 0xC15D213AA4D7A795


def _crc64_table() -> list[int]:
    table = []
    for byte in range(256):
        fp = byte
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY64 & -(fp & 1))
        table.append(fp)
    return table


_TABLE = _crc64_table()


def crc64_avro(data: bytes) -> bytes:
    """The 64-bit Rabin fingerprint, as the 8 little-endian bytes single-object encoding uses."""
    fp = _EMPTY64
    for byte in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return fp.to_bytes(8, "little")


def canonical(schema: Any, namespace: str = "") -> Any:
    """Parsing Canonical Form for the kinds of schema the record uses ([PRIMITIVES], [FULLNAMES],
    [STRIP], [ORDER]); serialise with `json.dumps(..., separators=(",", ":"))` ([WHITESPACE])."""
    if isinstance(schema, str):
        return schema
    if isinstance(schema, list):
        return [canonical(branch, namespace) for branch in schema]
    kind = schema["type"]
    if kind == "record":
        name = schema["name"]
        namespace = schema.get("namespace", namespace)
        fullname = name if "." in name else f"{namespace}.{name}"
        fields = [
            {"name": field["name"], "type": canonical(field["type"], namespace)}
            for field in schema["fields"]
        ]
        return {"name": fullname, "type": "record", "fields": fields}
    if kind == "map":
        return {"type": "map", "values": canonical(schema["values"], namespace)}
    if kind == "array":
        return {"type": "array", "items": canonical(schema["items"], namespace)}
    return canonical(kind, namespace)  # a primitive, with or without a logical type


def spec_fingerprint() -> bytes:
    form = json.dumps(canonical(json.loads(AVSC.read_text())), separators=(",", ":"))
    return crc64_avro(form.encode())


def test_the_crc_matches_the_avro_projects_test_vectors() -> None:
    assert crc64_avro(b'"int"').hex() == "8f5c393f1ad57572"
    assert crc64_avro(b'"null"') == (7195948357588979594).to_bytes(8, "little")


# --- Apache avro as the independent reader ----------------------------------------------------


def apache_read(body: bytes) -> dict[str, Any]:
    schema = avro.schema.parse(AVSC.read_text())
    record: dict[str, Any] = avro.io.DatumReader(schema).read(
        avro.io.BinaryDecoder(io.BytesIO(body))
    )
    return record


def as_apache_reads_it(record: dict[str, Any]) -> dict[str, Any]:
    """Apache avro turns timestamp-millis into aware datetimes."""
    expected = dict(record)
    for field in ("starttime", "answertime", "endtime", "fetched_at"):
        if expected[field] is not None:
            expected[field] = dt.datetime.fromtimestamp(expected[field] / 1000, dt.UTC)
    return expected


def sample_record() -> dict[str, Any]:
    bill = answered(extnumber="8001", userkey="1#", queue={"name": "售后"}, flag=None)
    return normalise(bill, context())


# --- single-object encoding -------------------------------------------------------------------


def test_single_object_header_is_magic_and_the_spec_fingerprint() -> None:
    value = SingleObjectEncoder().encode(sample_record())

    assert value[:2] == b"\xc3\x01"
    assert value[2:10] == spec_fingerprint()


def test_single_object_body_is_read_by_apache_avro() -> None:
    record = sample_record()

    value = SingleObjectEncoder().encode(record)

    assert apache_read(value[10:]) == as_apache_reads_it(record)


def test_the_schema_tag_names_the_fingerprint_in_wire_order() -> None:
    assert SingleObjectEncoder().schema_tag == f"fp:{spec_fingerprint().hex()}"


def test_the_fingerprint_ignores_logical_types_like_the_spec_says() -> None:
    # Apache's Python library keeps {"type": "long"} for a logical type in its canonical form
    # (Java's does not); with logical types removed it agrees with the spec.
    millis = '{"type": "long", "logicalType": "timestamp-millis"}'
    plain = AVSC.read_text().replace(millis, '"long"')

    assert avro.schema.parse(plain).fingerprint("CRC-64-AVRO") == spec_fingerprint()
    assert load_schema().fingerprint == spec_fingerprint()


def test_decode_reverses_single_object_encoding() -> None:
    record = sample_record()

    assert decode(SingleObjectEncoder().encode(record)) == record


def test_writing_without_logical_types_gives_the_same_bytes() -> None:
    record = sample_record()
    with_logical_types = io.BytesIO()
    fastavro.schemaless_writer(with_logical_types, load_schema().parsed, record)

    assert SingleObjectEncoder().encode(record)[10:] == with_logical_types.getvalue()


# --- Confluent framing ------------------------------------------------------------------------


@pytest.fixture
def confluent() -> ConfluentEncoder:
    return ConfluentEncoder.create("mock://registry", {}, TOPIC)


def test_confluent_registers_our_schema_under_the_topic_value_subject(
    confluent: ConfluentEncoder,
) -> None:
    latest = confluent.registry.get_latest_version(f"{TOPIC}-value")

    assert latest.schema_id == confluent.schema_id
    assert latest.schema.schema_type == "AVRO"
    assert json.loads(latest.schema.schema_str) == json.loads(AVSC.read_text())
    assert confluent.schema_tag == f"id:{confluent.schema_id}"


def test_confluent_framing_is_magic_zero_and_the_schema_id(confluent: ConfluentEncoder) -> None:
    record = sample_record()

    value = confluent.encode(record)

    assert value[0] == 0
    assert int.from_bytes(value[1:5], "big") == confluent.schema_id
    assert apache_read(value[5:]) == as_apache_reads_it(record)


def test_decode_reads_confluent_framing_through_the_registry(confluent: ConfluentEncoder) -> None:
    record = sample_record()

    assert decode(confluent.encode(record), confluent.registry) == record


def test_registering_again_reuses_the_id(confluent: ConfluentEncoder) -> None:
    again = ConfluentEncoder.register(confluent.registry, TOPIC)

    assert again.schema_id == confluent.schema_id


def test_encoder_for_picks_the_format_from_the_settings() -> None:
    assert isinstance(encoder_for(AvroSettings(), TOPIC), SingleObjectEncoder)
    registry = AvroSettings(schema_registry_url="mock://settings")
    assert isinstance(encoder_for(registry, TOPIC), ConfluentEncoder)


def test_the_app_builds_its_encoder_and_registry_client_from_the_settings() -> None:
    source = {"appid": "app", "accesskey": "key"}
    plain = Settings(source=source)
    framed = Settings(source=source, avro={"schema_registry_url": "mock://app"})

    assert isinstance(build_encoder(plain), SingleObjectEncoder)
    assert registry_client(plain) is None
    assert isinstance(build_encoder(framed), ConfluentEncoder)
    assert isinstance(registry_client(framed), SchemaRegistryClient)


class _RefusingRegistry:
    def __init__(self, error: Exception) -> None:
        self._error = error

    def register_schema(self, subject: str, schema: Any) -> int:
        raise self._error


@pytest.mark.parametrize(
    ("error", "expected", "hint"),
    [
        (SchemaRegistryError(409, 409, "incompatible"), SchemaRegistrationError, "incompatible"),
        (SchemaRegistryError(401, 40101, "unauthorised"), SchemaRegistrationError, "credentials"),
        (SchemaRegistryError(503, 50003, "down"), SchemaRegistryUnavailableError, "down"),
        (OSError("connection refused"), SchemaRegistryUnavailableError, "cannot be reached"),
    ],
)
def test_registry_failures_become_our_errors(
    error: Exception, expected: type[Exception], hint: str
) -> None:
    with pytest.raises(expected) as caught:
        ConfluentEncoder.register(_RefusingRegistry(error), TOPIC)  # type: ignore[arg-type]

    assert "cdr.calls-value" in str(caught.value)
    assert hint in str(caught.value)
    assert caught.value.__cause__ is error


def test_unknown_registry_settings_are_refused() -> None:
    with pytest.raises(SchemaRegistrationError, match="schema_registry_config"):
        ConfluentEncoder.create("mock://registry", {"no.such.setting": "1"}, TOPIC)


# --- decoding what is not ours ----------------------------------------------------------------


def test_decode_rejects_a_foreign_fingerprint_naming_it() -> None:
    value = b"\xc3\x01" + bytes.fromhex("0123456789abcdef") + b"\x00"

    with pytest.raises(AvroDecodeError, match="fingerprint 0123456789abcdef"):
        decode(value)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (b"", "empty"),
        (b'{"id": 1}', "neither Avro single-object encoding"),
        (b"\xc3\x01\x00", "shorter than its 10-byte header"),
        (b"\x00\x00\x00", "shorter than its 5-byte header"),
        (b"\x00\x00\x00\x00\x01", "set avro.schema_registry_url"),
    ],
)
def test_decode_explains_values_it_cannot_read(value: bytes, problem: str) -> None:
    with pytest.raises(AvroDecodeError, match=problem):
        decode(value)


def test_decode_rejects_truncated_and_padded_bodies() -> None:
    value = SingleObjectEncoder().encode(sample_record())

    with pytest.raises(AvroDecodeError, match="does not match its schema"):
        decode(value[:-3])
    with pytest.raises(AvroDecodeError, match="1 bytes after the record"):
        decode(value + b"\x00")


def test_decode_names_a_schema_id_the_registry_does_not_know(confluent: ConfluentEncoder) -> None:
    with pytest.raises(AvroDecodeError, match="schema id 999"):
        decode(b"\x00" + (999).to_bytes(4, "big") + b"\x00", confluent.registry)


def test_decode_reads_with_the_writer_schema_from_the_registry() -> None:
    """A value written with another (e.g. newer) schema version decodes with that version."""
    registry = SchemaRegistryClient.new_client({"url": "mock://newer"})
    newer = json.loads(AVSC.read_text())
    newer["fields"].append({"name": "queue", "type": "string", "default": "", "doc": "Queue."})
    schema_id = registry.register_schema(f"{TOPIC}-value", Schema(json.dumps(newer), "AVRO"))
    record = sample_record() | {"queue": "售后"}
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(newer), record)

    decoded = decode(b"\x00" + schema_id.to_bytes(4, "big") + body.getvalue(), registry)

    assert decoded == record


# --- encoding errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("duration", "28"), ("id", 2**70), ("extra_fields", {"a": 1}), ("userkey", "\ud800")],
)
def test_records_that_do_not_fit_the_schema_are_record_errors(field: str, value: Any) -> None:
    record = sample_record() | {field: value}

    with pytest.raises(RecordError) as caught:
        SingleObjectEncoder().encode(record)

    assert caught.value.stage == "encode"
    assert caught.value.field == field
    assert str(caught.value).startswith(f"field {field!r}: cannot be encoded")
    assert caught.value.__cause__ is not None


def test_a_record_missing_a_field_is_a_record_error() -> None:
    record = sample_record()
    del record["source"]

    with pytest.raises(RecordError, match="'source'") as caught:
        SingleObjectEncoder().encode(record)

    assert caught.value.field == "source"


# --- the schema -------------------------------------------------------------------------------


def schema_fields() -> dict[str, dict[str, Any]]:
    return {field["name"]: field for field in json.loads(AVSC.read_text())["fields"]}


def test_the_schema_has_every_field_of_the_apis_example_bill() -> None:
    example = json.loads(EXAMPLE_RESPONSE)["data"]["result"]["bills"][0]

    assert set(example) <= set(schema_fields())


def test_the_record_and_every_field_have_a_doc() -> None:
    schema = json.loads(AVSC.read_text())

    assert schema["doc"].strip()
    undocumented = [name for name, field in schema_fields().items() if not field.get("doc")]
    assert undocumented == []


def test_the_schema_types() -> None:
    millis = {"type": "long", "logicalType": "timestamp-millis"}
    types = {name: field["type"] for name, field in schema_fields().items()}

    assert types == {
        "id": "long",
        "extnumber": "string",
        "destnumber": "string",
        "displaynumber": "string",
        "starttime": millis,
        "answertime": ["null", millis],
        "endtime": millis,
        "duration": "int",
        "billsec": "int",
        "direction": "string",
        "callmethod": "int",
        "userid": "string",
        "memberid": "string",
        "chengshudu": "string",
        "customuuid": "string",
        "recordfilename": "string",
        "downloadip": "string",
        "hangupdirection": "int",
        "hangupcause": "int",
        "userkey": "string",
        "extra_fields": {"type": "map", "values": "string"},
        "source": "string",
        "fetched_at": millis,
        "pbx_timezone": "string",
        "fetch_mode": "string",
    }
    assert schema_fields()["answertime"]["default"] is None
    assert schema_fields()["extra_fields"]["default"] == {}


def test_the_loaded_schema_is_the_file() -> None:
    assert load_schema().text == AVSC.read_text()
    assert load_schema_text() == AVSC.read_text()
    assert load_schema().parsed["name"] == "io.cdrconnector.v1.CallDetailRecord"


# --- fastavro's compiled extension ------------------------------------------------------------


def test_the_compiled_extension_is_in_use() -> None:
    assert_compiled_fastavro()


def test_pure_python_fastavro_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from fastavro import _write_py

    monkeypatch.setattr(fastavro.write, "schemaless_writer", _write_py.schemaless_writer)

    with pytest.raises(FastavroNotCompiledError, match="without its compiled extension"):
        assert_compiled_fastavro()


def test_decode_says_when_the_registrys_schema_is_not_an_avro_record() -> None:
    registry = SchemaRegistryClient.new_client({"url": "mock://broken"})
    broken = {"type": "record", "name": "Cdr", "fields": [{"name": "id", "type": "no-such"}]}
    schema_id = registry.register_schema(f"{TOPIC}-value", Schema(json.dumps(broken), "AVRO"))

    with pytest.raises(AvroDecodeError, match="the registry's schema is not a valid Avro record"):
        decode(b"\x00" + schema_id.to_bytes(4, "big") + b"\x00", registry)
