"""A schema change is made in four places, and this test names the ones left out.

`schemas/cdr_record.avsc` says what a record is; `bill.KNOWN_FIELDS` which of a bill's fields it
holds (the others go to `extra_fields`); `records.normalise` fills every field (the general
path); `BillWriter.write_common` writes the same bytes in one pass (`bill_writer.WRITTEN_FIELDS`
is its field order). `coverage_problems` compares a schema with all three, and checks the
writer's bytes against the schema, so a field added to the .avsc without the code that fills
it fails here with the field and the files named, before a property test fails on bytes.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import fastavro

from cdr_connector.avro import SCHEMA_PATH, SingleObjectEncoder
from cdr_connector.bill import KNOWN_FIELDS
from cdr_connector.bill_writer import WRITTEN_FIELDS, BillWriter
from cdr_connector.records import CONNECTOR_FIELDS, normalise
from tests.fakes import bill
from tests.unit.test_records import context

NORMALISE = "records.normalise (cdr_connector/records.py)"
WRITER = "BillWriter.write_common (cdr_connector/bill_writer.py, WRITTEN_FIELDS)"
VENDOR = "bill.KNOWN_FIELDS (cdr_connector/bill.py)"
CONNECTOR = "records.CONNECTOR_FIELDS (cdr_connector/records.py)"


def coverage_problems(schema: dict[str, Any]) -> list[str]:
    """What the code lacks, or has beyond, for `schema`; one line each, naming the place."""
    names = [field["name"] for field in schema["fields"]]
    sample = bill(7, answertime="2026-11-26 10:00:05", userkey="1")
    filled = normalise(sample, context())
    problems: list[str] = []
    for name in names:
        if name not in filled:
            problems.append(f"field {name!r}: {NORMALISE} does not fill it")
        if name not in WRITTEN_FIELDS:
            problems.append(f"field {name!r}: {WRITER} does not write it")
        if name not in KNOWN_FIELDS and name not in CONNECTOR_FIELDS:
            problems.append(
                f"field {name!r}: in neither {VENDOR} (a field of the vendor's bill) nor "
                f"{CONNECTOR} (a field the connector fills)"
            )
    for name in filled.keys() - set(names):
        problems.append(f"field {name!r}: {NORMALISE} fills it, {SCHEMA_PATH.name} lacks it")
    for name in set(WRITTEN_FIELDS) - set(names):
        problems.append(f"field {name!r}: {WRITER} writes it, {SCHEMA_PATH.name} lacks it")
    if not problems and list(WRITTEN_FIELDS) != names:
        problems.append(f"{WRITER}: the fields are not in the schema's order")
    if not problems:
        problems += _writer_bytes_problems(schema, sample, filled)
    return problems


def _writer_bytes_problems(
    schema: dict[str, Any], sample: dict[str, Any], filled: dict[str, Any]
) -> list[str]:
    """The writer's value read back with `schema` is the record `normalise` made."""
    encoder = SingleObjectEncoder()
    record = BillWriter(encoder, context()).write_common(sample)
    assert record is not None, "the sample bill is of the usual shape"
    body = io.BytesIO(record.value[len(encoder.header) :])
    try:
        read = fastavro.schemaless_reader(body, fastavro.parse_schema(_plain(schema)), None)
    except Exception as exc:  # whatever the bytes make the reader do
        return [f"{WRITER}: its value does not read as {SCHEMA_PATH.name} ({exc!r})"]
    if read != filled or body.read():
        return [f"{WRITER}: its value reads as another record than {NORMALISE} makes"]
    return []


def _plain(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` without logical types: times read back as the integers `normalise` gives."""

    def plain(kind: Any) -> Any:
        if isinstance(kind, list):
            return [plain(branch) for branch in kind]
        if isinstance(kind, dict) and "logicalType" in kind:
            return kind["type"]
        return kind

    fields = [{**field, "type": plain(field["type"])} for field in schema["fields"]]
    return {**schema, "fields": fields}


def schema_copy(tmp_path: Path) -> Path:
    copy = tmp_path / SCHEMA_PATH.name
    shutil.copyfile(SCHEMA_PATH, copy)
    return copy


def test_the_schema_and_the_code_that_fills_it_agree() -> None:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert coverage_problems(schema) == []


def test_a_vendor_field_added_to_the_schema_alone_is_named_with_the_places_to_change(
    tmp_path: Path,
) -> None:
    copy = schema_copy(tmp_path)
    schema = json.loads(copy.read_text(encoding="utf-8"))
    schema["fields"].insert(20, {"name": "queuename", "type": "string", "default": ""})
    copy.write_text(json.dumps(schema), encoding="utf-8")
    problems = coverage_problems(json.loads(copy.read_text(encoding="utf-8")))
    assert problems == [
        f"field 'queuename': {NORMALISE} does not fill it",
        f"field 'queuename': {WRITER} does not write it",
        f"field 'queuename': in neither {VENDOR} (a field of the vendor's bill) nor {CONNECTOR} "
        "(a field the connector fills)",
    ]


def test_a_field_removed_from_the_schema_is_named_where_it_is_still_filled(
    tmp_path: Path,
) -> None:
    copy = schema_copy(tmp_path)
    schema = json.loads(copy.read_text(encoding="utf-8"))
    schema["fields"] = [f for f in schema["fields"] if f["name"] != "userkey"]
    problems = coverage_problems(schema)
    assert sorted(problems) == sorted(
        [
            f"field 'userkey': {NORMALISE} fills it, cdr_record.avsc lacks it",
            f"field 'userkey': {WRITER} writes it, cdr_record.avsc lacks it",
        ]
    )


def test_fields_reordered_in_the_schema_are_named_at_the_writer() -> None:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    fields = schema["fields"]
    fields[1], fields[2] = fields[2], fields[1]
    assert coverage_problems(schema) == [f"{WRITER}: the fields are not in the schema's order"]


def test_a_retyped_field_is_caught_by_the_writers_bytes() -> None:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    for field in schema["fields"]:
        if field["name"] == "hangupcause":
            field["type"] = "string"
    [problem] = coverage_problems(schema)
    assert problem.startswith(f"{WRITER}: its value does not read as cdr_record.avsc")
