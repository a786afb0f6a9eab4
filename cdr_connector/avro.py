"""`schemas/cdr_record.avsc` loaded once; a normalised record -> Avro bytes, and back.

Two wire formats, chosen by the settings (see `encoder_for`):

- Avro single-object encoding (no registry): `C3 01`, the schema's 8-byte CRC-64-AVRO
  fingerprint of its Parsing Canonical Form (little-endian, as the Avro spec and the Java
  library write it), then the record's binary body.
- Confluent Schema Registry framing: byte `00`, the 4-byte big-endian schema id the registry
  gave the schema under subject `<topic>-value` (TopicNameStrategy), then the body. The id
  comes from confluent-kafka's registry client at start-up, as its `AvroSerializer` would get
  it: registered (`auto.register.schemas`, the default), looked up by the schema itself, or the
  subject's latest version (`use.latest.version`), where producers may only read subjects.
  Records are still written by `_write`, not by that serializer, whose per-record work
  (subject name, rule hooks, its own schema resolution) the hot path measured in bench/
  would pay for every record.

Either way every message also gets a `cdr.schema` header: `fp:<16 hex digits>` (the fingerprint
bytes in wire order) or `id:<n>`. `schemas/README.md` says how consumers use them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from io import BytesIO
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

import fastavro
import fastavro.read
import fastavro.schema
import fastavro.validation
import fastavro.write
from confluent_kafka.schema_registry import RegisteredSchema, Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from cdr_connector.config import AvroSettings, Settings
from cdr_connector.errors import PermanentError, RecordError, RetryableError

SCHEMA_PATH: Final = Path(__file__).parent / "schemas" / "cdr_record.avsc"

SINGLE_OBJECT_MAGIC: Final = b"\xc3\x01"
CONFLUENT_MAGIC: Final = b"\x00"
_SINGLE_OBJECT_HEADER_SIZE: Final = 10  # magic + 8-byte fingerprint
_CONFLUENT_HEADER_SIZE: Final = 5  # magic + 4-byte schema id
_STAGE: Final = "encode"
# fastavro's own messages end in "on field <name>"; used when validation cannot say more.
_FASTAVRO_FIELD = re.compile(r"on field (\w+)")
T = TypeVar("T")


class SchemaRegistryUnavailableError(RetryableError):
    """The schema registry could not be reached or answered with a server error."""


class SchemaRegistrationError(PermanentError):
    """The schema registry refused the schema or the credentials; a person must act."""


class SchemaNotRegisteredError(SchemaRegistrationError):
    """Lookup-only: the subject lacks this connector's schema; someone allowed to write the
    subject must register it first."""


class AvroDecodeError(PermanentError):
    """A Kafka value is not a record this connector can read; the message says why."""


class FastavroNotCompiledError(PermanentError):
    """fastavro runs as pure Python, many times slower than its compiled extension."""


@dataclass(frozen=True)
class CdrSchema:
    """The record schema in every form the connector needs."""

    text: str
    """The .avsc file's JSON text, as registered with a schema registry."""
    parsed: dict[str, Any]
    """`fastavro.parse_schema` of the text: the schema records are written with."""
    canonical_form: str
    """The Avro Parsing Canonical Form that the fingerprint is computed over."""
    fingerprint: bytes
    """CRC-64-AVRO (Rabin) of the canonical form, 8 bytes in wire (little-endian) order."""
    plain: dict[str, Any]
    """The parsed schema without logical types. Records carry epoch milliseconds already, and
    timestamp-millis is a long on the wire, so writing with it gives the same bytes while
    skipping fastavro's per-field logical-type conversion; reading with it returns the ints
    that `records.normalise` produces instead of datetimes."""

    @property
    def fingerprint_hex(self) -> str:
        return self.fingerprint.hex()


def load_schema_text() -> str:
    """The .avsc file's JSON text (what `cdr-connector schema` prints)."""
    return load_schema().text


@cache
def load_schema() -> CdrSchema:
    """The record schema, read and parsed once per process."""
    text = SCHEMA_PATH.read_text(encoding="utf-8")
    raw = json.loads(text)
    canonical = fastavro.schema.to_parsing_canonical_form(raw)
    # fastavro returns the fingerprint's bytes in wire order, as hex.
    fingerprint = bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO"))
    return CdrSchema(
        text=text,
        parsed=_parse_record_schema(raw),
        canonical_form=canonical,
        fingerprint=fingerprint,
        plain=_parse_record_schema(_without_logical_types(raw)),
    )


class RecordEncoder(Protocol):
    """Turns a normalised record (`records.normalise`) into a Kafka value.

    `encode` is pure and may be called from any thread. It raises `RecordError(stage="encode")`
    for a record that does not fit the schema; such a record goes to the dead-letter topic.
    """

    schema_tag: str
    """Names the writer schema in the `cdr.schema` header: `fp:<hex>` or `id:<n>`."""
    header: bytes
    """What every value starts with, before the record's Avro body."""

    def encode(self, record: dict[str, Any]) -> bytes: ...


class SingleObjectEncoder:
    """Avro single-object encoding; consumers need the .avsc (or its fingerprint) only."""

    def __init__(self, schema: CdrSchema | None = None) -> None:
        self._schema = schema or load_schema()
        self.header = SINGLE_OBJECT_MAGIC + self._schema.fingerprint
        self.schema_tag = f"fp:{self._schema.fingerprint_hex}"

    def encode(self, record: dict[str, Any]) -> bytes:
        return _write(self.header, self._schema, record)


class ConfluentEncoder:
    """Confluent Schema Registry framing: what Kafka Streams, Flink and ksqlDB read with
    their registry-aware Avro deserialisers."""

    def __init__(
        self, schema_id: int, registry: SchemaRegistryClient, schema: CdrSchema | None = None
    ) -> None:
        self._schema = schema or load_schema()
        self.header = CONFLUENT_MAGIC + schema_id.to_bytes(4, "big")
        self.schema_id = schema_id
        self.registry = registry
        """The client the schema was registered with; `decode` can look ids up through it."""
        self.schema_tag = f"id:{schema_id}"

    @classmethod
    def create(
        cls,
        url: str,
        config: Mapping[str, str],
        topic: str,
        *,
        auto_register: bool = True,
        use_latest_version: bool = False,
    ) -> ConfluentEncoder:
        """An encoder for the id of this schema under `<topic>-value`: registered
        (`auto_register`), else the subject's latest version (`use_latest_version`), else
        looked up by the schema itself.

        Blocks on network I/O; call it from a thread. A `mock://` URL gives an in-memory
        registry (for tests). Raises `SchemaRegistrationError` when the settings are invalid or
        the registry refuses (`SchemaNotRegisteredError` when a lookup finds nothing),
        `SchemaRegistryUnavailableError` when it cannot be reached.
        """
        registry = _new_registry_client(url, config)
        if auto_register:
            return cls.register(registry, topic)
        if use_latest_version:
            return cls.latest(registry, topic)
        return cls.look_up(registry, topic)

    @classmethod
    def register(cls, registry: SchemaRegistryClient, topic: str) -> ConfluentEncoder:
        """Registers the schema (an existing identical version keeps its id); needs write
        access to the subject."""
        schema = load_schema()
        subject = subject_for(topic)
        schema_id = _ask_registry(
            registry, subject, "register", lambda: registry.register_schema(subject, _ours())
        )
        return cls(schema_id, registry, schema)

    @classmethod
    def look_up(cls, registry: SchemaRegistryClient, topic: str) -> ConfluentEncoder:
        """The id of the subject's version that is this schema; needs read access only."""
        subject = subject_for(topic)
        registered = _ask_registry(
            registry, subject, "look up", lambda: registry.lookup_schema(subject, _ours())
        )
        return cls(_schema_id(registered, subject), registry)

    @classmethod
    def latest(cls, registry: SchemaRegistryClient, topic: str) -> ConfluentEncoder:
        """The id of the subject's latest version, which must be this schema (the same Parsing
        Canonical Form: values are written with this schema, whatever the id says); needs read
        access only."""
        schema = load_schema()
        subject = subject_for(topic)
        registered = _ask_registry(
            registry,
            subject,
            "read the latest version of",
            lambda: registry.get_latest_version(subject),
        )
        found = _canonical_form(registered.schema.schema_str or "")
        if found != schema.canonical_form:
            raise SchemaRegistrationError(
                f"the latest version ({registered.version}, schema id {registered.schema_id}) "
                f"of subject {subject!r} is not this connector's schema "
                f"({schema.parsed['name']}, fingerprint {schema.fingerprint_hex}): register "
                f"{SCHEMA_PATH.name} (`cdr-connector schema`) as its latest version, or set "
                "avro.use_latest_version = false to look the schema up among every version"
            )
        return cls(_schema_id(registered, subject), registry, schema)

    def encode(self, record: dict[str, Any]) -> bytes:
        return _write(self.header, self._schema, record)


def subject_for(topic: str) -> str:
    """The registry subject of the topic's values under TopicNameStrategy."""
    return f"{topic}-value"


def build_encoder(settings: Settings) -> RecordEncoder:
    """The encoder for the records topic; see `encoder_for`. Blocking."""
    return encoder_for(settings.avro, settings.kafka.topic)


def encoder_for(settings: AvroSettings, topic: str) -> RecordEncoder:
    """The encoder the settings ask for: Confluent framing when a registry URL is set (this
    registers or looks up the schema, blocking), single-object encoding otherwise."""
    if settings.schema_registry_url:
        return ConfluentEncoder.create(
            settings.schema_registry_url,
            settings.schema_registry_config,
            topic,
            auto_register=settings.auto_register_schemas,
            use_latest_version=settings.use_latest_version,
        )
    return SingleObjectEncoder()


def registry_client(settings: Settings) -> SchemaRegistryClient | None:
    """A client for the configured schema registry, for `decode`; None without a URL."""
    url = settings.avro.schema_registry_url
    return _new_registry_client(url, settings.avro.schema_registry_config) if url else None


def _new_registry_client(url: str, config: Mapping[str, str]) -> SchemaRegistryClient:
    try:
        return SchemaRegistryClient.new_client({**config, "url": url})
    except ValueError as exc:  # an unknown property or a URL it cannot use
        raise SchemaRegistrationError(
            f"schema registry settings are invalid: {exc}; check avro.schema_registry_url "
            "and avro.schema_registry_config"
        ) from exc


def decode(value: bytes, registry: SchemaRegistryClient | None = None) -> dict[str, Any]:
    """The record in a Kafka value of either wire format, timestamps as epoch milliseconds
    (so `decode(encoder.encode(record)) == record`).

    Single-object values must carry this schema's fingerprint. Confluent-framed values are read
    with the writer schema that `registry` returns for their id. Raises `AvroDecodeError`.
    """
    if value[:2] == SINGLE_OBJECT_MAGIC:
        return _read(value, _SINGLE_OBJECT_HEADER_SIZE, _single_object_schema(value))
    if value[:1] == CONFLUENT_MAGIC:
        return _read(value, _CONFLUENT_HEADER_SIZE, _registered_schema(value, registry))
    if not value:
        raise AvroDecodeError("value is empty")
    raise AvroDecodeError(
        f"value starts with {value[:2].hex()}: neither Avro single-object encoding (c301) "
        "nor Confluent Schema Registry framing (00)"
    )


def assert_compiled_fastavro() -> None:
    """Raises `FastavroNotCompiledError` unless fastavro's Cython extension is in use.

    fastavro silently falls back to pure Python when its extension cannot be imported (a
    source install without a compiler, an unsupported platform), and then encodes several
    times slower; better to fail at start-up than to fall behind unnoticed.
    """
    modules = {
        getattr(fastavro.write.schemaless_writer, "__module__", None),
        getattr(fastavro.read.schemaless_reader, "__module__", None),
    }
    if modules != {"fastavro._write", "fastavro._read"}:
        raise FastavroNotCompiledError(
            f"fastavro {fastavro.__version__} is running without its compiled extension "
            f"(found {', '.join(sorted(str(m) for m in modules))}); install a binary wheel "
            "for this platform: pip install --only-binary fastavro --force-reinstall fastavro"
        )


# --- writing ----------------------------------------------------------------------------------


def _write(header: bytes, schema: CdrSchema, record: dict[str, Any]) -> bytes:
    # A fresh buffer per record keeps encoders thread-safe, and measured no slower than
    # truncating a shared one.
    buffer = BytesIO()
    buffer.write(header)
    try:
        fastavro.schemaless_writer(buffer, schema.plain, record)
    except (ValueError, TypeError, OverflowError, KeyError, AttributeError) as exc:
        raise _encode_error(record, schema, exc) from exc
    return buffer.getvalue()


def _encode_error(record: Any, schema: CdrSchema, exc: Exception) -> RecordError:
    field = _invalid_field(record, schema)
    if field is None and isinstance(exc, UnicodeEncodeError):
        field = _unencodable_text_field(record)
    if field is None:
        match = _FASTAVRO_FIELD.search(str(exc))
        field = match.group(1) if match else None
    where = f"field {field!r}" if field else "record"
    return RecordError(
        f"{where}: cannot be encoded with schema {schema.parsed['name']} ({exc})",
        stage=_STAGE,
        field=field,
    )


def _invalid_field(record: Any, schema: CdrSchema) -> str | None:
    """The first field fastavro's validator rejects; slow, so only on the error path."""
    try:
        fastavro.validation.validate(record, schema.plain, raise_errors=True)
    except fastavro.validation.ValidationError as exc:
        if exc.errors:
            return str(exc.errors[0].field).rsplit(".", 1)[-1]
    except Exception:  # the validator itself chokes on some inputs; the caller falls back
        return None
    return None


def _unencodable_text_field(record: Any) -> str | None:
    """The first string field that is not valid UTF-8 text (a lone surrogate), which
    fastavro's validator accepts and its writer does not."""
    if not isinstance(record, Mapping):
        return None
    for name, value in record.items():
        if isinstance(value, str):
            try:
                value.encode()
            except UnicodeEncodeError:
                return str(name)
    return None


# --- reading ----------------------------------------------------------------------------------


def _single_object_schema(value: bytes) -> dict[str, Any]:
    if len(value) < _SINGLE_OBJECT_HEADER_SIZE:
        raise AvroDecodeError(
            f"single-object value is {len(value)} bytes, shorter than its 10-byte header"
        )
    ours = load_schema()
    found = value[2:_SINGLE_OBJECT_HEADER_SIZE]
    if found != ours.fingerprint:
        raise AvroDecodeError(
            f"single-object value was written with schema fingerprint {found.hex()}, not "
            f"{ours.fingerprint_hex} ({ours.parsed['name']} in {SCHEMA_PATH.name}); "
            "it needs the schema that was current when it was written"
        )
    return ours.plain


def _registered_schema(value: bytes, registry: SchemaRegistryClient | None) -> dict[str, Any]:
    if len(value) < _CONFLUENT_HEADER_SIZE:
        raise AvroDecodeError(
            f"Confluent-framed value is {len(value)} bytes, shorter than its 5-byte header"
        )
    schema_id = int.from_bytes(value[1:_CONFLUENT_HEADER_SIZE], "big")
    if registry is None:
        raise AvroDecodeError(
            f"value is framed for a schema registry (schema id {schema_id}); "
            "set avro.schema_registry_url to read it"
        )
    try:
        registered = registry.get_schema(schema_id)
    except SchemaRegistryError as exc:
        raise AvroDecodeError(
            f"schema id {schema_id} cannot be fetched from the schema registry: {exc}"
        ) from exc
    if registered.schema_type not in (None, "AVRO"):
        raise AvroDecodeError(f"schema id {schema_id} is {registered.schema_type}, not Avro")
    return _plain_reading_schema(registered.schema_str)


@lru_cache(maxsize=64)
def _plain_reading_schema(text: str) -> dict[str, Any]:
    try:
        return _parse_record_schema(_without_logical_types(json.loads(text)))
    except (ValueError, fastavro.schema.SchemaParseException) as exc:
        raise AvroDecodeError(f"the registry's schema is not a valid Avro record: {exc}") from exc


def _parse_record_schema(schema: dict[str, Any]) -> dict[str, Any]:
    parsed = fastavro.parse_schema(schema)
    if not isinstance(parsed, dict) or parsed.get("type") != "record":
        raise ValueError("the schema is not a record schema")
    return parsed


def _read(value: bytes, header_size: int, schema: dict[str, Any]) -> dict[str, Any]:
    body = BytesIO(value)
    body.seek(header_size)
    try:
        record = fastavro.schemaless_reader(body, schema, None)
    except (EOFError, ValueError, TypeError, IndexError, UnicodeDecodeError) as exc:
        raise AvroDecodeError(f"value body does not match its schema: {exc!r}") from exc
    if body.tell() != len(value):
        raise AvroDecodeError(
            f"value has {len(value) - body.tell()} bytes after the record; "
            "it was not written with the schema its header names"
        )
    if not isinstance(record, dict):
        raise AvroDecodeError("value's schema is not a record schema")
    return record


def _without_logical_types(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _without_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [_without_logical_types(item) for item in schema]
    return schema


# --- the registry's answers -------------------------------------------------------------------


def _ours() -> Schema:
    return Schema(load_schema().text, "AVRO")


def _schema_id(registered: RegisteredSchema, subject: str) -> int:
    if registered.schema_id is None:
        raise SchemaRegistrationError(
            f"the schema registry answered for subject {subject!r} without a schema id; "
            "avro.schema_registry_url must name a Confluent-compatible API"
        )
    return registered.schema_id


def _canonical_form(text: str) -> str:
    try:
        return str(fastavro.schema.to_parsing_canonical_form(json.loads(text)))
    except (ValueError, fastavro.schema.SchemaParseException) as exc:
        raise SchemaRegistrationError(
            f"the registry's schema is not a valid Avro schema: {exc}"
        ) from exc


def _ask_registry(
    registry: SchemaRegistryClient, subject: str, action: str, request: Callable[[], T]
) -> T:
    """`request`'s answer, or its failure as our own error (see `_registry_error`)."""
    try:
        return request()
    except SchemaRegistryError as exc:
        raise _registry_error(exc, subject, action, registry) from exc
    except Exception as exc:
        # Transport faults arrive as the HTTP library's own exceptions, whose module has
        # changed between client releases; anything that is not an answer is "unreachable".
        raise SchemaRegistryUnavailableError(
            f"schema registry cannot be reached to {action} subject {subject!r}: {exc}"
        ) from exc


def _registry_error(
    exc: SchemaRegistryError, subject: str, action: str, registry: SchemaRegistryClient
) -> PermanentError | RetryableError:
    status = exc.http_status_code
    if status is None or status >= 500 or status in (408, 429):
        return SchemaRegistryUnavailableError(
            f"schema registry failed to {action} subject {subject!r}: {exc}"
        )
    if status == 404 and _is_not_found(exc):
        schema = load_schema()
        return SchemaNotRegisteredError(
            f"cannot {action} subject {subject!r}: it has no version with this connector's "
            f"schema ({schema.parsed['name']}, fingerprint {schema.fingerprint_hex}) and "
            "avro.auto_register_schemas is false; have it registered "
            f"(`cdr-connector schema` prints {SCHEMA_PATH.name}) by someone allowed to write "
            f"the subject, or let the connector register it ({exc})"
        )
    return SchemaRegistrationError(
        f"cannot {action} subject {subject!r}: {_refusal_hint(status, subject, registry)} ({exc})"
    )


def _is_not_found(exc: SchemaRegistryError) -> bool:
    """A registry's "no such subject, version or schema" (404xx), rather than a 404 from a
    server that is no registry at that path."""
    return 40400 <= exc.error_code <= 40499


def _refusal_hint(status: int, subject: str, registry: SchemaRegistryClient) -> str:
    if status == 409:
        return (
            "the schema is incompatible with the subject's latest version under "
            f"{_compatibility_rule(registry, subject)}; see schemas/README.md for the "
            "evolution rules"
        )
    if status in (401, 403):
        return "the registry refused the credentials; check avro.schema_registry_config"
    if status == 404:
        return (
            "the registry has no Confluent API at that address; avro.schema_registry_url must "
            "name it (for Apicurio Registry: <base URL>/apis/ccompat/v7)"
        )
    if status == 422:
        return "the registry considers the schema invalid"
    return "the registry refused the request"


def _compatibility_rule(registry: SchemaRegistryClient, subject: str) -> str:
    """The subject's compatibility rule (or the registry's), named for the message of a
    refusal; unnamed when the registry will not say."""
    for name in (subject, None):
        try:
            return f"its {registry.get_compatibility(name)} compatibility rule"
        except Exception:  # a message is being built: any failure just leaves the level out
            continue
    return "its compatibility rule"
