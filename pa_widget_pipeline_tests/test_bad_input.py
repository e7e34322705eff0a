"""Issue 7, bad input: widgets PA should never send, registry entries that must never be used, partition keys
that name no store. Bad widgets fail (or are skipped) one by one with their reason, naming store, widget and field,
while the rest sync; bad registry entries are refused with an error naming store and field.

The widget cases share one sync run of one store (module fixture): each test asserts its own case on that run."""

from __future__ import annotations

import os

import pytest
from dagster import AssetKey, DagsterEventType, instance_for_test

from pa_widget_pipeline.defs.launch import sync_stores
from pa_widget_pipeline.pa.models import Widget
from pa_widget_pipeline.sandbox.pa_server import REMOVE, make_widget
from pa_widget_pipeline.sandbox.runner import Sandbox
from pa_widget_pipeline.stores import RegistryError, parse_registry
from pa_widget_pipeline.sync.mapping import metaobject_handle, widget_fields
from pa_widget_pipeline_tests.harness import REGISTRY_TEST_ENV, StoreHarness, registry_entry

STORE = "bad-input"
REC, MERCH, BUNDLE = "pa_recommendation_widget", "pa_merchandising_widget", "pa_bundle_widget"
WEBSITE = "a888d1ff-b248-521f-9d91-00d76b25bdfc"  # the harness derives it from the key; checked below

MARKUP_NAME = '<script>alert("pwn")</script> & <b>Sale</b> "quoted" \'single\''
ODD_UNICODE_NAME = "Ünïcödé 🎁 e\u0301 zero\u200bwidth \u202eRTL\u202c 𝒻𝒶𝓃𝒸𝓎 中文 العربية"

GOOD = [make_widget(i, WEBSITE, t) for i, t in enumerate([1, 1, 6, 5])]


def with_type(raw: dict, value) -> dict:
    """`raw` with its "type" replaced (REMOVE drops it); make_widget's own `type` argument is the PA type."""
    out = {k: v for k, v in raw.items() if k != "type"}
    if value is not REMOVE:
        out["type"] = value
    return out


CASES: dict[str, dict] = {
    "missing_id": make_widget(10, WEBSITE, 1, id=REMOVE),
    "missing_type": with_type(make_widget(11, WEBSITE, 1), REMOVE),
    "string_type": with_type(make_widget(12, WEBSITE, 1), "1"),
    "float_type": with_type(make_widget(13, WEBSITE, 1), 1.5),
    "unknown_type": make_widget(14, WEBSITE, 42),
    "dup_a": make_widget(15, WEBSITE, 1),
    "dup_b": {**make_widget(16, WEBSITE, 6), "id": make_widget(15, WEBSITE, 1)["id"]},
    "slots_as_string": make_widget(17, WEBSITE, 1, numberOfSlots="eight"),
    "active_as_string": make_widget(18, WEBSITE, 6, isActive="yes"),
    "slots_not_a_list": make_widget(19, WEBSITE, 5, slots={"position": 1}),
    "header_as_string": make_widget(20, WEBSITE, 1, header="You may also like"),
    "markup_name": make_widget(21, WEBSITE, 1, name=MARKUP_NAME),
    "unicode_name": make_widget(22, WEBSITE, 6, name=ODD_UNICODE_NAME),
    "newline_name": make_widget(23, WEBSITE, 1, name="Two\nlines"),
    "control_char_name": make_widget(24, WEBSITE, 5, name="Bell\x07"),
    "blank_name": make_widget(25, WEBSITE, 1, name="   "),
    "huge_styles": make_widget(26, WEBSITE, 5, styles={"css": "x" * 2_000_001}),
}


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory):
    """One store fed every bad widget plus good ones, synced once: (entry, shop, instance, sandbox)."""
    tmp = tmp_path_factory.mktemp("bad_input")
    with pytest.MonkeyPatch.context() as mp, Sandbox() as sandbox:
        home = tmp / "dagster_home"
        home.mkdir()
        mp.setenv("DAGSTER_HOME", str(home))
        harness = StoreHarness(sandbox, tmp, mp)
        store = harness.add(STORE, widgets=GOOD + list(CASES.values()))
        assert store.website_id == WEBSITE
        with instance_for_test(temp_dir=str(home)) as instance, open(os.devnull, "w") as out:
            [entry] = sync_stores(instance, [STORE], out=out)
            yield entry, store.shop, instance, sandbox, harness


def error_for(entry, case: str):
    wid = CASES[case].get("id")
    found = [e for e in entry.errors if e.widget_id == wid]
    assert len(found) == 1, (case, found)
    return found[0]


def held(shop, mo_type: str, raw: dict) -> dict | None:
    obj = shop.metaobjects.get(mo_type, {}).get(metaobject_handle(raw["id"]))
    return None if obj is None else obj["fields"]


def test_bad_widgets_fail_alone_and_the_rest_sync(bad_run):
    entry, shop, *_ = bad_run
    assert entry.store == STORE and entry.status == "partial"
    # 4 good + markup + unicode synced; unknown type skipped; every other case failed (both duplicates).
    assert (entry.total, entry.synced, entry.skipped, entry.failed) == (21, 6, 1, 14)
    assert entry.total == entry.synced + entry.unchanged + entry.skipped + entry.failed
    for raw in GOOD:
        mo_type = {1: REC, 6: MERCH, 5: BUNDLE}[raw["type"]]
        assert held(shop, mo_type, raw)["name"] == raw["name"]
    assert (shop.count(REC), shop.count(MERCH), shop.count(BUNDLE)) == (3, 2, 1)


def test_widget_missing_id(bad_run):
    entry, *_ = bad_run
    [error] = [e for e in entry.errors if e.widget_id is None]
    assert error.code == "INVALID_WIDGET" and "field 'id'" in error.message and "required" in error.message.lower()
    assert error.type == "recommendation"  # its type is still known


@pytest.mark.parametrize("case", ["missing_type", "string_type", "float_type"])
def test_widget_missing_or_non_integer_type(bad_run, case):
    entry, *_ = bad_run
    error = error_for(entry, case)
    assert error.code == "INVALID_WIDGET" and "field 'type'" in error.message
    assert error.type is None


def test_widget_of_unknown_type_is_skipped_with_its_type(bad_run):
    entry, shop, instance, *_ = bad_run
    assert not [e for e in entry.errors if e.widget_id == CASES["unknown_type"]["id"]]
    handle = metaobject_handle(CASES["unknown_type"]["id"])
    assert all(handle not in objs for objs in shop.metaobjects.values())
    [record] = instance.fetch_materializations(AssetKey("widgets_by_type"), limit=1).records
    summary = record.asset_materialization.metadata["summary"].data
    assert summary["skipped_by_type"] == {"Unknown": 1}


def test_duplicate_ids_in_one_fetch_fail_every_copy(bad_run):
    entry, shop, *_ = bad_run
    dup_id = CASES["dup_a"]["id"]
    found = [e for e in entry.errors if e.widget_id == dup_id]
    assert len(found) == 2 and {e.code for e in found} == {"DUPLICATE_ID"}
    assert all("field 'id'" in e.message and "2 times" in e.message for e in found)
    assert {e.type for e in found} == {"recommendation", "merchandising"}
    assert all(metaobject_handle(dup_id) not in objs for objs in shop.metaobjects.values())


@pytest.mark.parametrize("case,field", [
    ("slots_as_string", "numberOfSlots"),
    ("active_as_string", "isActive"),
    ("slots_not_a_list", "slots"),
    ("header_as_string", "header"),
])
def test_widget_with_wrong_field_types(bad_run, case, field):
    entry, *_ = bad_run
    error = error_for(entry, case)
    assert error.code == "INVALID_WIDGET" and f"field '{field}'" in error.message
    assert error.type in ("recommendation", "merchandising", "bundle")


@pytest.mark.parametrize("case,mo_type", [("markup_name", REC), ("unicode_name", MERCH)])
def test_names_with_markup_and_odd_unicode_are_kept_exactly(bad_run, case, mo_type):
    entry, shop, *_ = bad_run
    raw = CASES[case]
    assert not [e for e in entry.errors if e.widget_id == raw["id"]]
    fields = held(shop, mo_type, raw)
    assert fields["name"] == raw["name"]
    assert fields == {k: v for k, v in widget_fields(Widget.model_validate(raw)).items() if v != ""}


@pytest.mark.parametrize("case,code", [
    ("newline_name", "INVALID_VALUE"),
    ("control_char_name", "INVALID_VALUE"),
    ("blank_name", "BLANK"),
])
def test_names_shopify_would_refuse_fail_before_writing(bad_run, case, code):
    entry, shop, *_ = bad_run
    error = error_for(entry, case)
    assert error.code == code and "field 'name'" in error.message
    assert all(metaobject_handle(CASES[case]["id"]) not in objs for objs in shop.metaobjects.values())


def test_styles_blob_over_two_million_characters_fails_that_widget(bad_run):
    entry, shop, *_ = bad_run
    error = error_for(entry, "huge_styles")
    assert (error.code, error.type) == ("TOO_LONG", "bundle")
    assert "field 'styles'" in error.message and "2000000" in error.message
    assert metaobject_handle(CASES["huge_styles"]["id"]) not in shop.metaobjects.get(BUNDLE, {})


def test_bad_widgets_are_named_in_the_run_events(bad_run):
    """The grouping step's metadata names the store and lists each failure with widget id and field."""
    entry, _, instance, *_ = bad_run
    [record] = instance.fetch_materializations(AssetKey("widgets_by_type"), limit=1).records
    metadata = record.asset_materialization.metadata
    summary = metadata["summary"].data
    assert summary["store"] == STORE and summary["failed"] == 14
    rows = {(r.data["widget_id"], r.data["code"]) for r in metadata["errors"].records}
    assert (CASES["huge_styles"]["id"], "TOO_LONG") in rows and ("", "INVALID_WIDGET") in rows


def test_partition_key_not_in_the_registry_is_refused(bad_run):
    entry, shop, instance, sandbox, harness = bad_run
    instance.add_dynamic_partitions("stores", ["ghost"])
    pa_before, shop_before = len(sandbox.pa.requests), len(sandbox.shopify.requests)
    with open(os.devnull, "w") as out:
        [ghost] = sync_stores(instance, ["ghost"], out=out)
    assert ghost.status == "failed" and ghost.total == 0
    assert "store 'ghost' is not in the store registry (known: bad-input)" in ghost.message
    assert (len(sandbox.pa.requests), len(sandbox.shopify.requests)) == (pa_before, shop_before)
    failures = instance.all_logs(ghost.run_id, of_type={DagsterEventType.STEP_FAILURE})
    assert failures and all(f.dagster_event.step_failure_data.user_failure_data.metadata["error_code"].value
                            == "UNKNOWN_STORE" for f in failures)


# -------------------------------------------------------------------------------------------------------- registry

ENV = REGISTRY_TEST_ENV
entry = registry_entry




def problems_for(raw):
    with pytest.raises(RegistryError) as info:
        parse_registry(raw, environ=ENV)
    return info.value.problems


# What test_stores.py does not already cover: more hostile values of each kind.
@pytest.mark.parametrize("field,value,fragment", [
    # a domain that is not *.myshopify.com
    ("shop_domain", "acme.myshopify.com.evil.example", "myshopify.com"),
    ("shop_domain", "acme.myshopify.co", "myshopify.com"),
    ("shop_domain", "myshopify.com", "myshopify.com"),
    ("shop_domain", "https://acme.myshopify.com", "myshopify.com"),
    ("shop_domain", "acme.myshopify.com/admin", "myshopify.com"),
    # plain http to a host that is not loopback (names that only look like loopback included)
    ("pa_auth_url", "http://localhost.evil.example", "loopback"),
    ("pa_api_url", "http://127.0.0.1.nip.io", "loopback"),
    ("shopify_admin_url", "http://0.0.0.0:8790/shops/x", "loopback"),
    ("pa_api_url", "http://acme.myshopify.com", "loopback"),
    # credentials inside a URL
    ("shopify_admin_url", "https://shpat_abc@acme-au.myshopify.com", "credentials"),
    ("pa_auth_url", "https://:secret@pa-auth.example", "credentials"),
    ("pa_api_url", "https://pa-api.example@evil.example", "credentials"),
    # queries, fragments, encoded or backslashed dot segments, control characters
    ("pa_api_url", "https://pa-api.example/?token=abc", "query"),
    ("pa_api_url", "https://pa-api.example/#x", "fragment"),
    ("shopify_admin_url", "https://acme-au.myshopify.com/%2e%2e/other", "'..'"),
    ("shopify_admin_url", "https://acme-au.myshopify.com/a%2F..%2Fb", "'..'"),
    ("pa_api_url", "https://pa-api.example/a\\..\\b", "'..'"),
    ("pa_api_url", "https://pa-api.example/\r\nX-Injected: 1", "control characters"),
    ("pa_api_url", "javascript:alert(1)", "scheme"),
    # path tricks and other junk in a store key (it is a partition key and a path segment)
    ("key", "a/b", "store key"),
    ("key", "..", "store key"),
    ("key", "%2e%2e", "store key"),
    ("key", "acme\\au", "store key"),
    ("key", "acme\n", "store key"),
    ("key", "-acme", "store key"),
    ("key", "ａｃｍｅ", "store key"),
    ("key", "a" * 65, "store key"),
    ("key", "", "store key"),
    # a trailing newline slips past a regex ending in `$` unless the whole string must match
    ("shop_domain", "acme-au.myshopify.com\n", "myshopify.com"),
    ("shopify_api_version", "2025-10\n", "quarterly"),
    ("pa_website_id", "b2a7c9d0-1111-4e2f-8a3b-222233334444\n", "GUID"),
    ("shopify_token_env", "TOK\n", "environment variable name"),
    ("metaobject_types", {"bundle": "pa_bundle_widget\n"}, "not a valid metaobject type"),
    # other fields
    ("pa_client_secret_env", "$(cat /etc/passwd)", "environment variable name"),
    ("metaobject_types", {"bundle": "pa bundle!"}, "not a valid metaobject type"),
    ("metaobject_types", {"bundle": "pa_recommendation_widget"}, "same metaobject type"),
    ("allow_mass_delete", "sure", "bool"),
])
def test_hostile_registry_entries_are_refused_naming_store_and_field(field, value, fragment):
    problems = problems_for({"stores": [entry(**{field: value})]})
    assert len(problems) == 1, problems
    # A bad key is quoted as given (so the operator finds the entry); an empty one by its position.
    where = "store 'acme-au'" if field != "key" else f"store {value!r}" if value else "store #1"
    assert problems[0].startswith(f"{where}: field {field}"), problems[0]
    assert fragment in problems[0]


@pytest.mark.parametrize("raw,fragment", [
    (["not", "a", "mapping"], "must be a mapping"),
    ({"stores": "acme"}, "field stores"),
    ({"stores": [entry()], "extra": 1}, "field extra: unknown key"),
    ({"stores": ["acme-au"]}, "store #1"),
    ({"stores": [{"key": "half"}]}, "store 'half': field shop_domain"),
])
def test_malformed_registry_files_are_refused(raw, fragment):
    problems = problems_for(raw)
    assert any(fragment in p for p in problems), problems


def test_loopback_sandbox_urls_stay_allowed():
    registry = parse_registry({"stores": [entry(pa_api_url="http://[::1]:8789",
                                                shopify_admin_url="http://127.0.0.1:8790/shops/acme-au")]},
                              environ=ENV)
    assert registry.get("acme-au").pa_api_url == "http://[::1]:8789"
