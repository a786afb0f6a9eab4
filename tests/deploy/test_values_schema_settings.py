"""The chart's values.schema.json mirrors some of the connector's settings (values.config): each
mirrored setting must exist in the settings model, with a compatible JSON type, bounds no wider
than the model's, enum values the model accepts, and a `default` (where given) equal to the
model's. So the chart cannot let through a value the connector refuses at start-up, nor keep a
setting the model has renamed.
"""

from __future__ import annotations

import json
import math
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import AnyHttpUrl, BaseModel, SecretStr, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from cdr_connector.config import PollSettings, Settings
from tests.deploy.conftest import CHART, _model_of

SCHEMA = CHART / "values.schema.json"
# JSON Schema types a model type may be mirrored as.
JSON_TYPES: dict[Any, set[str]] = {
    str: {"string"},
    AnyHttpUrl: {"string"},
    Path: {"string"},
    SecretStr: {"string"},
    bool: {"boolean"},
    int: {"integer"},
    float: {"number", "integer"},
    tuple: {"array"},
    list: {"array"},
    dict: {"object"},
}


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA.read_text(encoding="utf-8"))
    return schema


def mirrored(
    node: dict[str, Any], model: type[BaseModel], path: str = ""
) -> Iterator[tuple[str, Any, FieldInfo]]:
    """(key, schema of the key, model field) of every setting the schema names under `node`;
    the settings of a list of sections (`sources`) as `sources[].name`."""
    for name, sub in node.get("properties", {}).items():
        key = f"{path}{name}"
        assert name in model.model_fields, f"values.schema.json names {key}, not a setting"
        field = model.model_fields[name]
        annotation = _model_of(field.annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if isinstance(sub, dict):
                yield from mirrored(sub, annotation, f"{key}.")
            continue
        item = _section_of_list(annotation)
        if item is not None and isinstance(sub, dict) and "items" in sub:
            yield from mirrored(sub["items"], item, f"{key}[].")
        yield key, sub, field


def _section_of_list(annotation: Any) -> type[BaseModel] | None:
    """`list[Section]` -> Section; None for anything else."""
    if typing.get_origin(annotation) is not list:
        return None
    (item,) = typing.get_args(annotation)
    return item if isinstance(item, type) and issubclass(item, BaseModel) else None


def _bounds(field: FieldInfo) -> tuple[float, float]:
    """The model's (lowest, highest) allowed value; exclusive bounds are kept as given."""
    low, high = -math.inf, math.inf
    for item in field.metadata:
        for name in ("ge", "gt"):
            if getattr(item, name, None) is not None:
                low = float(getattr(item, name))
        for name in ("le", "lt"):
            if getattr(item, name, None) is not None:
                high = float(getattr(item, name))
    return low, high


def _schema_bounds(sub: dict[str, Any]) -> tuple[float, float]:
    low = sub.get("minimum", sub.get("exclusiveMinimum", -math.inf))
    high = sub.get("maximum", sub.get("exclusiveMaximum", math.inf))
    return float(low), float(high)


def _check(key: str, sub: Any, field: FieldInfo) -> list[str]:
    if sub is False:  # a setting the chart sets itself and refuses in values
        return []
    problems = []
    annotation = _model_of(field.annotation)
    origin = typing.get_origin(annotation) or annotation
    if "type" in sub:
        types = set(sub["type"]) if isinstance(sub["type"], list) else {sub["type"]}
        if not types <= JSON_TYPES.get(origin, set()):
            problems.append(f"{key}: type {sorted(types)} for a {annotation}")
    low, high = _bounds(field)
    schema_low, schema_high = _schema_bounds(sub)
    if schema_low < low or schema_high > high:
        problems.append(f"{key}: schema allows {schema_low}..{schema_high}, model {low}..{high}")
    constrained = typing.Annotated[annotation, *field.metadata] if field.metadata else annotation
    adapter: TypeAdapter[Any] = TypeAdapter(constrained)
    for value in sub.get("enum", []):
        try:
            adapter.validate_python(value)
        except ValidationError:
            problems.append(f"{key}: the schema allows {value!r}, the model refuses it")
    if "default" in sub and sub["default"] != field.default:
        problems.append(f"{key}: default {sub['default']!r}, the model's is {field.default!r}")
    return problems


def test_every_mirrored_setting_agrees_with_the_model() -> None:
    config = _schema()["properties"]["config"]
    found = list(mirrored(config, Settings))
    assert len(found) >= 10, "the schema mirrors fewer settings than it did"
    problems = [problem for key, sub, field in found for problem in _check(key, sub, field)]
    assert problems == []


def test_sources_and_fleet_are_mirrored_to_their_settings() -> None:
    keys = {key for key, _, _ in mirrored(_schema()["properties"]["config"], Settings)}
    assert {"sources", "sources[].name", "sources[].appid", "sources[].poll"} <= keys
    assert {"sources[].filters.extnumber", "fleet.enabled", "fleet.session_timeout_seconds"} <= keys


def test_a_sources_poll_overrides_are_the_keys_of_poll() -> None:
    """The connector validates `sources[].poll` as `[poll]`: the schema lets no other key in."""
    sources = _schema()["properties"]["config"]["properties"]["sources"]
    allowed = sources["items"]["properties"]["poll"]["propertyNames"]["enum"]
    assert allowed == list(PollSettings.model_fields)


def test_the_schema_lists_every_section_of_the_model() -> None:
    sections = set(_schema()["properties"]["config"]["properties"])
    assert sections == set(Settings.model_fields)


@pytest.mark.parametrize(
    ("sub", "complaint"),
    [
        ({"type": "integer", "minimum": 0, "maximum": 99999}, "schema allows"),
        ({"type": "string"}, "type"),
        ({"enum": [70000]}, "refuses"),
        ({"type": "integer", "default": 80}, "default"),
    ],
)
def test_the_check_sees_a_disagreement(sub: dict[str, Any], complaint: str) -> None:
    port = Settings.model_fields["http"].annotation.model_fields["port"]  # type: ignore[union-attr]
    bounded = {"minimum": 1, "maximum": 65535, **sub}
    problems = _check("http.port", bounded, port)
    assert any(complaint in problem for problem in problems), problems
    assert _check("http.port", {"type": "integer", "minimum": 1, "maximum": 65535}, port) == []


def test_the_chart_defaults_that_the_schema_names_are_the_models() -> None:
    defaults = [(key, sub) for key, sub, _ in mirrored(_schema()["properties"]["config"], Settings)]
    assert any("default" in sub for _, sub in defaults if isinstance(sub, dict))
