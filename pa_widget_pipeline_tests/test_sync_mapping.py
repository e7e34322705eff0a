"""widget → metaobject handle and field values (sync/mapping.py)."""

from __future__ import annotations

import json

import pytest

from pa_widget_pipeline.pa.models import Widget
from pa_widget_pipeline.sync.contract import CONTRACT_KEYS
from pa_widget_pipeline.sync.mapping import (
    JSON_MAX_CHARS,
    SCALAR_MAX_CHARS,
    MappingError,
    compute_sync_hash,
    metaobject_handle,
    widget_fields,
)


def make_widget(**overrides) -> Widget:
    raw = {
        "id": "6f1c2a7e-3d4b-4c1a-9e8f-0a1b2c3d4e5f",
        "websiteId": "b2a7c9d0-1111-4e2f-8a3b-222233334444",
        "name": "PDP - Similar Items",
        "type": 1,
        "typeName": "Recommendation",
        "isActive": True,
        "location": "pdp-below-description",
        "numberOfSlots": 8,
        "header": {"title": {"collapsed": {"desktop": "You may also like", "mobile": "You may also like"}}},
        "routes": [{"id": "a0d5", "name": "PDP", "priority": 10}],
        "slots": [{"position": 1, "label": "Slot 1", "recommenderId": "c9e1"}],
        "styles": {"general": {}, "desktop": {}, "mobile": {}},
        "createdAt": "2025-01-10T03:12:00Z",
        "updatedAt": "2025-03-02T22:41:00Z",
    }
    raw.update(overrides)
    return Widget.model_validate(raw)


def test_handle_lowercases_and_replaces_other_characters():
    assert metaobject_handle("6F1C2A7E-3D4B") == "pa-6f1c2a7e-3d4b"
    assert metaobject_handle("a_b.c d/é") == "pa-a-b-c-d--"  # one '-' per replaced character
    assert metaobject_handle("ABC") == metaobject_handle("abc")


def test_fields_cover_every_contract_key_as_strings():
    values = widget_fields(make_widget())
    assert set(values) == set(CONTRACT_KEYS)
    assert all(isinstance(v, str) for v in values.values())
    assert values["pa_widget_id"] == "6f1c2a7e-3d4b-4c1a-9e8f-0a1b2c3d4e5f"
    assert values["is_active"] == "true"
    assert values["number_of_slots"] == "8"
    assert values["pa_updated_at"] == "2025-03-02T22:41:00Z"
    assert values["routes"] == '[{"id":"a0d5","name":"PDP","priority":10}]'
    assert json.loads(values["header"]) == make_widget().header
    assert widget_fields(make_widget(isActive=False))["is_active"] == "false"


def test_json_is_compact_with_sorted_keys_and_keeps_unicode():
    values = widget_fields(make_widget(styles={"z": 1, "a": {"y": "ü", "b": [2, 1]}}))
    assert values["styles"] == '{"a":{"b":[2,1],"y":"ü"},"z":1}'


def test_absent_optional_values_are_empty_strings():
    w = Widget.model_validate({"id": "w1", "type": 1, "name": "Minimal"})
    values = widget_fields(w)
    assert set(values) == set(CONTRACT_KEYS)
    for key in ("location", "number_of_slots", "header", "styles", "pa_updated_at"):
        assert values[key] == "", key
    # routes and slots default to empty lists in the model: written as JSON arrays.
    assert values["routes"] == "[]" and values["slots"] == "[]"
    assert values["is_active"] == "true"


@pytest.mark.parametrize("raw, expected", [
    ("2025-03-02T22:41:00Z", "2025-03-02T22:41:00Z"),
    ("2025-03-02T23:41:00+01:00", "2025-03-02T22:41:00Z"),
    ("2025-03-02T22:41:00", "2025-03-02T22:41:00Z"),
    ("2025-03-02T22:41:00.250Z", "2025-03-02T22:41:00.250000Z"),
    ("2025-03-02", "2025-03-02T00:00:00Z"),
    ("", ""),
])
def test_updated_at_is_normalised_to_utc(raw, expected):
    assert widget_fields(make_widget(updatedAt=raw))["pa_updated_at"] == expected


def test_hash_is_independent_of_key_order():
    a = make_widget(header={"a": 1, "b": {"c": 2, "d": 3}}, styles={"x": [1, {"p": 1, "q": 2}]})
    b = make_widget(header={"b": {"d": 3, "c": 2}, "a": 1}, styles={"x": [1, {"q": 2, "p": 1}]})
    assert widget_fields(a)["sync_hash"] == widget_fields(b)["sync_hash"]
    values = widget_fields(a)
    reordered = dict(reversed(list(values.items())))
    assert compute_sync_hash(reordered) == values["sync_hash"]


def test_hash_is_stable_across_calls_and_equivalent_timestamps():
    assert widget_fields(make_widget())["sync_hash"] == widget_fields(make_widget())["sync_hash"]
    utc = widget_fields(make_widget(updatedAt="2025-03-02T22:41:00Z"))["sync_hash"]
    offset = widget_fields(make_widget(updatedAt="2025-03-03T00:41:00+02:00"))["sync_hash"]
    assert utc == offset


@pytest.mark.parametrize("change", [
    {"name": "PDP - Similar items"},
    {"location": "cart"},
    {"location": None},
    {"isActive": False},
    {"numberOfSlots": 9},
    {"header": {"title": "x"}},
    {"slots": []},
    {"routes": [{"id": "a0d5", "name": "PDP", "priority": 11}]},
    {"styles": None},
    {"updatedAt": "2025-03-02T22:41:01Z"},
])
def test_hash_changes_when_any_value_changes(change):
    assert widget_fields(make_widget(**change))["sync_hash"] != widget_fields(make_widget())["sync_hash"]


def test_hash_is_sha256_hex_and_excludes_itself():
    values = widget_fields(make_widget())
    assert len(values["sync_hash"]) == 64 and int(values["sync_hash"], 16) >= 0
    assert compute_sync_hash({**values, "sync_hash": "anything"}) == values["sync_hash"]


def test_markup_and_unicode_in_names_are_kept():
    name = '<b>Tüp "picks"</b> & 🎁 für dich'
    assert widget_fields(make_widget(name=name))["name"] == name


def expect_error(field: str, code: str, **overrides) -> MappingError:
    with pytest.raises(MappingError) as info:
        widget_fields(make_widget(**overrides))
    err = info.value
    assert (err.field, err.code) == (field, code)
    assert field in str(err) and err.widget_id == "6f1c2a7e-3d4b-4c1a-9e8f-0a1b2c3d4e5f"
    return err


def test_json_over_two_million_characters_is_too_long():
    # '{"k":"' + body + '"}' : 8 characters around the body.
    at_limit = {"k": "x" * (JSON_MAX_CHARS - 8)}
    assert len(widget_fields(make_widget(styles=at_limit))["styles"]) == JSON_MAX_CHARS
    expect_error("styles", "TOO_LONG", styles={"k": "x" * (JSON_MAX_CHARS - 7)})


def test_scalar_over_65535_characters_is_too_long():
    assert widget_fields(make_widget(name="n" * SCALAR_MAX_CHARS))["name"] == "n" * SCALAR_MAX_CHARS
    expect_error("name", "TOO_LONG", name="n" * (SCALAR_MAX_CHARS + 1))
    expect_error("location", "TOO_LONG", location="l" * (SCALAR_MAX_CHARS + 1))


@pytest.mark.parametrize("bad", ["two\nlines", "cr\rhere", "tab\there", "bell\x07", "del\x7f", "sep\u2028x"])
def test_single_line_text_with_newline_or_control_is_invalid(bad):
    expect_error("name", "INVALID_VALUE", name=bad)
    expect_error("location", "INVALID_VALUE", location=bad)


@pytest.mark.parametrize("bad", ["yesterday", "2025-13-01T00:00:00Z", "02/03/2025", "2025-03-02T25:00:00Z"])
def test_updated_at_not_iso_is_invalid(bad):
    err = expect_error("pa_updated_at", "INVALID_VALUE", updatedAt=bad)
    assert "ISO 8601" in err.message


@pytest.mark.parametrize("name", ["", "   "])
def test_blank_name(name):
    expect_error("name", "BLANK", name=name)


def test_unrepresentable_json_is_invalid():
    expect_error("header", "INVALID_VALUE", header={"ratio": float("nan")})


def test_integer_out_of_shopify_range_is_invalid():
    expect_error("number_of_slots", "INVALID_VALUE", numberOfSlots=2**60)
