"""The conformer: what does not fit the schema in force is converted, moved to a variant
field, dropped or stops the run, by `schema_contract`; a field keeps its first type."""

from __future__ import annotations

import decimal
import logging

import pytest
from jsonschema import Draft7Validator, FormatChecker
from singer_sdk.singerlib import SelectionMask

from tap_analytics.conform import Conformer, SchemaContractError
from tests.helpers import config_for, run_cli, start_server

SCHEMA = {"type": "object", "required": ["id"], "properties": {
    "id": {"type": "string"},
    "count": {"type": ["integer", "null"]},
    "ratio": {"type": ["number", "null"]},
    "name": {"type": ["string", "null"]},
    "flag": {"type": ["boolean", "null"]},
    "attrs": {"type": ["object", "null"]},
    "tags": {"type": ["array", "null"]},
    "seen_at": {"type": ["string", "null"], "format": "date-time"},
}}


def conformer(contract: str = "evolve", mask: SelectionMask | None = None,
              memory: dict | None = None, schema: dict = SCHEMA, utc: bool = False
              ) -> Conformer:
    return Conformer("things", schema, fixed=["id"], contract=contract,
                     mask=mask or SelectionMask(), logger=logging.getLogger("test"),
                     memory=memory, utc=utc)


def valid(c: Conformer, record: dict) -> bool:
    return Draft7Validator(c.schema, format_checker=FormatChecker()).is_valid(record)


@pytest.mark.parametrize(("field", "sent", "kept"), [
    ("count", "42", 42), ("count", decimal.Decimal("5.0"), 5),
    ("ratio", "2.5", decimal.Decimal("2.5")), ("name", 12, "12"),
    ("name", {"a": 1}, '{"a":1}'), ("name", True, "true"), ("flag", "false", False),
    ("attrs", '{"plan": "pro"}', {"plan": "pro"}), ("tags", "[1, 2]", [1, 2]),
    ("id", 7, "7"),
])
def test_a_value_its_declared_type_holds_exactly_is_converted(field, sent, kept) -> None:
    c = conformer()
    record = {"id": "a", field: sent}
    c.conform_page([record])
    assert record[field] == kept and valid(c, record)


@pytest.mark.parametrize(("field", "sent", "variant"), [
    ("flag", "yes", "flag__v_text"), ("count", 3.5, "count__v_double"),
    ("count", "042", "count__v_text"), ("seen_at", "yesterday", "seen_at__v_text"),
    # strict validators (rfc3339-validator) know no leap second and no year 0
    ("seen_at", "2016-12-31T23:59:60Z", "seen_at__v_text"),
    ("seen_at", "0000-01-01T00:00:00Z", "seen_at__v_text"),
    ("attrs", [1], "attrs__v_json"), ("ratio", True, "ratio__v_bool"),
])
def test_any_other_value_moves_to_a_variant_field(field, sent, variant) -> None:
    c = conformer()
    record = {"id": "a", field: sent}
    c.conform_page([record])
    assert field not in record and record[variant] == sent
    assert variant in c.schema["properties"] and c.version == 1 and valid(c, record)


@pytest.mark.parametrize(("sent", "written"), [
    ("2025-01-01T09:23:20+02:00", "2025-01-01T07:23:20Z"),
    ("2025-01-01T01:00:00.123456789+05:30", "2024-12-31T19:30:00.123456789Z"),
    ("2024-02-28T22:59:00-01:15", "2024-02-29T00:14:00Z"),  # a leap day
    ("2016-12-31T22:44:59.5-01:15", "2016-12-31T23:59:59.5Z"),
    ("2025-06-30T12:00:00Z", "2025-06-30T12:00:00Z"),
    ("2025-06-30T12:00:00+00:00", "2025-06-30T12:00:00+00:00"),
    ("2025-06-30t12:00:00z", "2025-06-30t12:00:00z"),
    ("0001-01-01T00:30:00+01:00", "0001-01-01T00:30:00+01:00"),  # before year 1 in UTC
])
def test_utc_timestamps_writes_each_date_time_in_utc(sent, written) -> None:
    c = conformer(utc=True)
    record = {"id": "a", "seen_at": sent, "name": "2025-01-01T09:23:20+02:00"}
    c.conform_page([record])
    assert record == {"id": "a", "seen_at": written, "name": "2025-01-01T09:23:20+02:00"}
    assert valid(c, record)


def test_utc_timestamps_reaches_fields_learned_on_the_page_and_only_with_the_setting() -> None:
    sent = {"id": "a", "seen_at": "2025-01-01T09:23:20-03:00",
            "closed_at": "2025-01-01T23:00:00-03:00"}
    c = conformer(utc=True)
    records = [dict(sent)]
    c.conform_page(records)
    assert c.schema["properties"]["closed_at"]["format"] == "date-time"
    assert records[0]["seen_at"] == "2025-01-01T12:23:20Z"
    assert records[0]["closed_at"] == "2025-01-02T02:00:00Z"
    as_sent = [dict(sent)]
    conformer().conform_page(as_sent)
    assert as_sent == [sent]


def test_a_new_field_is_typed_from_its_page() -> None:
    c = conformer()
    page = [{"id": str(i), "score": i if i % 4 else str(i)} for i in range(8)]
    c.conform_page(page)
    assert c.schema["properties"]["score"] == {"type": ["integer", "null"]}
    assert [r["score"] for r in page] == list(range(8))  # "0", "4" converted
    assert all(valid(c, r) for r in page)


def test_discard_value_drops_what_does_not_fit() -> None:
    c = conformer("discard_value")
    record = {"id": "a", "flag": "yes", "count": "7", "new": 1}
    c.conform_page([record])
    assert record == {"id": "a", "count": 7} and c.version == 0


@pytest.mark.parametrize(("record", "words"), [
    ({"id": "a", "flag": "yes"}, "field 'flag' expected boolean/null, received string"),
    ({"id": "a", "count": "7"}, "field 'count' expected integer/null, received string"),
    ({"id": "a", "new": {}}, "field 'new' expected no such field in the catalog, received "
                             "object"),
])
def test_freeze_stops_naming_stream_field_and_types(record, words) -> None:
    with pytest.raises(SchemaContractError) as info:
        conformer("freeze").conform_page([record])
    assert str(info.value).startswith("things: ") and words in str(info.value)


def test_a_deselected_field_stays_out_with_its_variants() -> None:
    mask = SelectionMask({(): True, ("properties", "flag"): False})
    c = conformer(mask=mask)
    record = {"id": "a", "flag": "yes"}
    c.conform_page([record])
    assert record == {"id": "a"} and c.version == 0


def test_a_key_that_no_type_holds_stops_the_run() -> None:
    with pytest.raises(Exception, match=r"field 'id'.*must be string, the API sent null"):
        conformer().conform_page([{"id": None}])
    with pytest.raises(Exception, match="a record has no 'id'"):
        conformer().conform_page([{"name": "x"}])


def test_a_field_keeps_the_type_it_was_first_given() -> None:
    memory: dict = {}
    first = conformer(memory=memory)
    first.conform_page([{"id": "a", "late": 5}])
    assert memory["late"] == {"type": ["integer", "null"]}
    # a later run's catalog infers another type from another first page: memory wins
    retyped = {**SCHEMA, "properties": {**SCHEMA["properties"],
                                        "late": {"type": ["string", "null"]}}}
    second = conformer(memory=memory, schema=retyped)
    assert second.schema["properties"]["late"] == {"type": ["integer", "null"]}
    assert second.version == 1  # the first SCHEMA message of the run carries it
    record = {"id": "b", "late": "not a number"}
    second.conform_page([record])
    assert record["late__v_text"] == "not a number"


def test_freeze_through_the_cli_is_one_line(tmp_path) -> None:
    fake = start_server(scale=60, segments=2, drift_seed=5)
    try:
        out = run_cli(config_for(fake, schema_contract="freeze"), "--catalog",
                      str(_catalog(tmp_path, config_for(fake))))
        assert out.returncode == 1
        last = out.stderr.strip().splitlines()[-1]
        assert "expected" in last and "received" in last and "schema_contract is freeze" in last
        assert "Traceback" not in out.stderr
    finally:
        fake.server.shutdown()
        fake.server.server_close()


def _catalog(tmp_path, config: dict):
    import json

    from tests.helpers import discovered_catalog

    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(discovered_catalog(config)))
    return path
