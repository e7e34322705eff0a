"""The Shopify sandbox over real HTTP: validation, cost and throttling, metaobject rules, paging, definitions,
bulk mutations and every fault switch."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from pa_widget_pipeline.sync.contract import CONTRACT_FIELDS
from pa_widget_pipeline_tests.shopify_fixtures import (  # noqa: F401  (fixtures)
    ACCESS_TOKEN,
    RECOMMENDATION_TYPE,
    FakeClock,
    RunningShopify,
    contract_values,
    fake_clock,
    running_shopify_sandbox,
    shopify_http,
    shopify_sandbox,
)

UPSERT = """
mutation Upsert($handle: MetaobjectHandleInput!, $metaobject: MetaobjectUpsertInput!) {
  metaobjectUpsert(handle: $handle, metaobject: $metaobject) {
    metaobject { id handle type updatedAt fields { key value } field(key: "name") { value } }
    userErrors { field message code elementIndex elementKey }
  }
}"""

DELETE = """
mutation Delete($id: ID!) { metaobjectDelete(id: $id) { deletedId userErrors { field message code } } }"""

LIST = """
query List($type: String!, $first: Int!, $after: String) {
  metaobjects(type: $type, first: $first, after: $after) {
    nodes { id handle type updatedAt fields { key value type } field(key: "sync_hash") { key value } }
    edges { cursor node { id } }
    pageInfo { hasNextPage endCursor }
  }
}"""


def fields_of(values: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in values.items()]


def upsert_vars(handle: str, values: dict[str, str], mtype: str = RECOMMENDATION_TYPE) -> dict:
    return {"handle": {"type": mtype, "handle": handle}, "metaobject": {"fields": fields_of(values)}}


def upsert(running: RunningShopify, client: httpx.Client, handle: str, values: dict[str, str],
           mtype: str = RECOMMENDATION_TYPE) -> dict:
    body = running.gql(client, UPSERT, upsert_vars(handle, values, mtype))
    assert "errors" not in body, body
    return body["data"]["metaobjectUpsert"]


def batch_document(n: int) -> str:
    params = ", ".join(f"$h{i}: MetaobjectHandleInput!, $m{i}: MetaobjectUpsertInput!" for i in range(n))
    parts = "\n".join(
        f"u{i}: metaobjectUpsert(handle: $h{i}, metaobject: $m{i}) "
        "{ metaobject { id handle } userErrors { field message code elementIndex elementKey } }"
        for i in range(n))
    return f"mutation Batch({params}) {{\n{parts}\n}}"


def batch_vars(items: list[tuple[str, dict[str, str]]]) -> dict:
    out: dict = {}
    for i, (handle, values) in enumerate(items):
        out[f"h{i}"] = {"type": RECOMMENDATION_TYPE, "handle": handle}
        out[f"m{i}"] = {"fields": fields_of(values)}
    return out


# ------------------------------------------------------------------------------------------ validation and cost


def test_misspelled_field_and_wrong_argument_fail_validation(shopify_sandbox, shopify_http):
    r = shopify_sandbox
    bad_field = r.post(shopify_http, '{ metaobjects(type: "x", first: 1) { nodes { id handel } } }')
    assert bad_field.status_code == 200
    body = bad_field.json()
    assert "data" not in body and "handel" in body["errors"][0]["message"]
    bad_arg = r.gql(shopify_http, '{ metaobjectByHandle(type: "x", handle: "y") { id } }')
    assert "data" not in bad_arg and any("type" in e["message"] for e in bad_arg["errors"])
    bad_var = r.gql(shopify_http, UPSERT, {"handle": {"type": RECOMMENDATION_TYPE}, "metaobject": {}})
    assert bad_var.get("data") is None and bad_var["errors"]
    assert r.shop.count(RECOMMENDATION_TYPE) == 0


def test_unknown_api_version_and_raw_graphql_bodies(shopify_sandbox, shopify_http):
    r = shopify_sandbox
    headers = {"X-Shopify-Access-Token": r.access_token}
    wrong = shopify_http.post(f"{r.admin_url}/admin/api/v2025-10/graphql.json", json={"query": "{ shop { name } }"},
                              headers=headers)
    assert wrong.status_code == 404
    raw = shopify_http.post(r.graphql_url, content=b"{ shop { name } }",
                            headers={**headers, "Content-Type": "application/graphql"})
    assert raw.status_code == 200 and raw.json()["data"]["shop"]["name"] == r.shop_key
    not_json = shopify_http.post(r.graphql_url, content=b"{ shop", headers={**headers, "Content-Type": "application/json"})
    assert not_json.status_code == 400
    unknown_shop = shopify_http.post(f"{r.url}/shops/nope/admin/api/2025-10/graphql.json",
                                     json={"query": "{ shop { name } }"}, headers=headers)
    assert unknown_shop.status_code == 404


def test_every_answer_carries_cost_and_a_connection_refunds_unreturned_nodes(shopify_http):
    with running_shopify_sandbox(clock=FakeClock()) as r:
        for i in range(3):
            upsert(r, shopify_http, f"pa-w{i}", contract_values(f"W{i}"))
        body = r.gql(shopify_http, LIST, {"type": RECOMMENDATION_TYPE, "first": 250})
        cost = body["extensions"]["cost"]
        # a node: the object (1) + fields (1) + field() (1); edges { node } reach the same nodes, not charged twice
        assert cost["requestedQueryCost"] == 2 + 250 * 3
        assert cost["actualQueryCost"] == 2 + 3 * 3
        assert cost["throttleStatus"] == {"maximumAvailable": 2000.0, "currentlyAvailable": 2000 - 41,
                                          "restoreRate": 100.0}
        assert r.shop.stats.points_spent == 3 * 10 + 11
        assert r.shop.bucket.available() == 2000 - 41


def test_throttle_arithmetic_with_a_fake_clock(shopify_http):
    clock = FakeClock()
    with running_shopify_sandbox(clock=clock) as r:
        ok = 0
        while True:
            body = r.gql(shopify_http, UPSERT, upsert_vars(f"pa-b{ok}", contract_values(f"B{ok}")))
            if "errors" in body:
                break
            ok += 1
            assert ok <= 300, "never throttled"
        assert ok == 200  # 2000 points / 10 a mutation, no time passed
        assert "data" not in body
        assert body["errors"] == [{"message": "Throttled", "extensions": {
            "code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"}}]
        cost = body["extensions"]["cost"]
        assert cost["requestedQueryCost"] == 10 and cost["actualQueryCost"] is None
        assert cost["throttleStatus"] == {"maximumAvailable": 2000.0, "currentlyAvailable": 0, "restoreRate": 100.0}
        assert r.shop.count(RECOMMENDATION_TYPE) == 200
        clock.advance(1.0)  # 100 points restored -> 10 more mutations
        more = 0
        while "errors" not in r.gql(shopify_http, UPSERT, upsert_vars(f"pa-c{more}", contract_values("C"))):
            more += 1
            assert more <= 50
        assert more == 10
        assert r.shop.stats.throttled == 2
        assert r.shop.stats.upserts == 210
        assert r.shop.stats.points_spent == 2100


def test_throttled_answer_as_http_429_when_switched(shopify_http):
    clock = FakeClock()
    with running_shopify_sandbox(clock=clock, bucket_size=20, restore_rate=1) as r:
        r.shop.faults.throttle_http_status = 429
        assert r.post(shopify_http, UPSERT, upsert_vars("pa-1", contract_values("1"))).status_code == 200
        assert r.post(shopify_http, UPSERT, upsert_vars("pa-2", contract_values("2"))).status_code == 200
        third = r.post(shopify_http, UPSERT, upsert_vars("pa-3", contract_values("3")))
        assert third.status_code == 429
        assert third.json()["errors"][0]["extensions"]["code"] == "THROTTLED"
        assert float(third.headers["Retry-After"]) >= 1
        assert r.shop.count(RECOMMENDATION_TYPE) == 2


def test_max_cost_exceeded_refuses_the_whole_document(shopify_sandbox, shopify_http):
    r = shopify_sandbox
    items = [(f"pa-m{i}", contract_values(f"M{i}")) for i in range(101)]
    body = r.gql(shopify_http, batch_document(101), batch_vars(items))
    assert "data" not in body
    err = body["errors"][0]
    assert err["extensions"] == {"code": "MAX_COST_EXCEEDED", "cost": 1010, "maxCost": 1000}
    assert err["message"].startswith("Query cost is 1010, which exceeds the single query max cost limit (1000)")
    assert r.shop.count(RECOMMENDATION_TYPE) == 0
    nested = r.gql(shopify_http, "{ metaobjectDefinitions(first: 10) { nodes { metaobjects(first: 250) "
                                 "{ nodes { id } } } } }")
    assert nested["errors"][0]["extensions"]["code"] == "MAX_COST_EXCEEDED"


def test_input_arrays_over_250_are_rejected(shopify_sandbox, shopify_http):
    r = shopify_sandbox
    fields = [{"key": "name", "value": "x"}] * 251
    body = r.gql(shopify_http, UPSERT, {"handle": {"type": RECOMMENDATION_TYPE, "handle": "pa-x"},
                                        "metaobject": {"fields": fields}})
    assert "data" not in body
    assert body["errors"][0]["extensions"]["code"] == "MAX_INPUT_SIZE_EXCEEDED"
    assert "251" in body["errors"][0]["message"]


# ------------------------------------------------------------------------------------------ metaobject writes


def test_upsert_creates_then_updates_leaving_unsent_fields(shopify_sandbox, shopify_http):
    r = shopify_sandbox
    created = upsert(r, shopify_http, "pa-w1", contract_values("W1"))
    obj = created["metaobject"]
    assert created["userErrors"] == [] and obj["id"].startswith("gid://shopify/Metaobject/")
    assert obj["type"] == RECOMMENDATION_TYPE and obj["field"]["value"] == "Widget W1"
    updated = upsert(r, shopify_http, "pa-w1", {"name": "Renamed", "sync_hash": "h2"})
    assert updated["metaobject"]["id"] == obj["id"]
    values = {f["key"]: f["value"] for f in updated["metaobject"]["fields"]}
    assert values["name"] == "Renamed" and values["sync_hash"] == "h2" and values["location"] == "home"
    by_handle = r.gql(shopify_http, '{ metaobjectByHandle(handle: {type: "%s", handle: "pa-w1"}) '
                                    '{ id field(key: "location") { value } } }' % RECOMMENDATION_TYPE)
    assert by_handle["data"]["metaobjectByHandle"] == {"id": obj["id"], "field": {"value": "home"}}
    assert r.shop.stats.upserts == 2 and r.shop.count(RECOMMENDATION_TYPE) == 1


def test_metaobject_create_and_update_by_id(shopify_sandbox, shopify_http):
    r = shopify_sandbox
    create = """mutation($m: MetaobjectCreateInput!) { metaobjectCreate(metaobject: $m) {
        metaobject { id handle } userErrors { code field } } }"""
    update = """mutation($id: ID!, $m: MetaobjectUpdateInput!) { metaobjectUpdate(id: $id, metaobject: $m) {
        metaobject { id handle field(key: "name") { value } } userErrors { code field } } }"""
    made = r.gql(shopify_http, create, {"m": {"type": RECOMMENDATION_TYPE, "handle": "pa-c1",
                                              "fields": fields_of(contract_values("C1"))}})["data"]["metaobjectCreate"]
    assert made["userErrors"] == [] and made["metaobject"]["handle"] == "pa-c1"
    again = r.gql(shopify_http, create, {"m": {"type": RECOMMENDATION_TYPE, "handle": "pa-c1",
                                               "fields": fields_of(contract_values("C1"))}})["data"]["metaobjectCreate"]
    assert again["userErrors"][0]["code"] == "TAKEN"
    bad = r.gql(shopify_http, create, {"m": {"type": RECOMMENDATION_TYPE, "handle": "Bad Handle",
                                             "fields": fields_of(contract_values("C2"))}})["data"]["metaobjectCreate"]
    assert bad["userErrors"][0]["code"] == "INVALID"
    renamed = r.gql(shopify_http, update, {"id": made["metaobject"]["id"],
                                           "m": {"handle": "pa-c9", "fields": [{"key": "name", "value": "N"}]}})
    got = renamed["data"]["metaobjectUpdate"]["metaobject"]
    assert got == {"id": made["metaobject"]["id"], "handle": "pa-c9", "field": {"value": "N"}}
    assert set(r.shop.metaobjects[RECOMMENDATION_TYPE]) == {"pa-c9"}
    missing = r.gql(shopify_http, update, {"id": "gid://shopify/Metaobject/1", "m": {}})
    assert missing["data"]["metaobjectUpdate"]["userErrors"][0]["code"] == "RECORD_NOT_FOUND"


def test_delete_and_record_not_found(shopify_sandbox, shopify_http):
    r = shopify_sandbox
    gid = upsert(r, shopify_http, "pa-w1", contract_values("W1"))["metaobject"]["id"]
    ok = r.gql(shopify_http, DELETE, {"id": gid})["data"]["metaobjectDelete"]
    assert ok == {"deletedId": gid, "userErrors": []}
    again = r.gql(shopify_http, DELETE, {"id": gid})["data"]["metaobjectDelete"]
    assert again["deletedId"] is None and again["userErrors"][0]["code"] == "RECORD_NOT_FOUND"
    assert r.shop.count(RECOMMENDATION_TYPE) == 0 and r.shop.stats.deletes == 1


@pytest.mark.parametrize(
    ("handle", "values", "code", "element_key"),
    [
        ("pa-1", {**contract_values("1"), "colour": "red"}, "UNDEFINED_OBJECT_FIELD", "colour"),
        ("pa-1", contract_values("1", is_active="yes"), "INVALID_VALUE", "is_active"),
        ("pa-1", contract_values("1", number_of_slots="4.5"), "INVALID_VALUE", "number_of_slots"),
        ("pa-1", contract_values("1", header="{not json"), "INVALID_VALUE", "header"),
        ("pa-1", contract_values("1", pa_updated_at="yesterday"), "INVALID_VALUE", "pa_updated_at"),
        ("pa-1", contract_values("1", name="two\nlines"), "INVALID_VALUE", "name"),
        ("pa-1", contract_values("1", slots=json.dumps(["x" * 2_000_001])), "TOO_LONG", "slots"),
        ("pa-1", contract_values("1", location="x" * 65_536), "TOO_LONG", "location"),
        ("pa-1", contract_values("1", name="  "), "BLANK", "name"),
        ("pa-1", {k: v for k, v in contract_values("1").items() if k != "pa_widget_id"}, "OBJECT_FIELD_REQUIRED",
         "pa_widget_id"),
        ("PA_1", contract_values("1"), "INVALID", None),
        ("pa 1", contract_values("1"), "INVALID", None),
    ],
)
def test_upsert_user_error_codes(shopify_sandbox, shopify_http, handle, values, code, element_key):
    r = shopify_sandbox
    payload = r.gql(shopify_http, UPSERT, upsert_vars(handle, values))["data"]["metaobjectUpsert"]
    assert payload["metaobject"] is None
    assert [e["code"] for e in payload["userErrors"]] == [code]
    err = payload["userErrors"][0]
    assert err["elementKey"] == element_key
    if code in ("UNDEFINED_OBJECT_FIELD", "INVALID_VALUE", "TOO_LONG", "BLANK"):
        assert err["elementIndex"] == list(values).index(element_key)
    assert r.shop.count(RECOMMENDATION_TYPE) == 0


def test_duplicate_key_and_undefined_type(shopify_sandbox, shopify_http):
    r = shopify_sandbox
    dup = fields_of(contract_values("1")) + [{"key": "name", "value": "again"}]
    payload = r.gql(shopify_http, UPSERT, {"handle": {"type": RECOMMENDATION_TYPE, "handle": "pa-1"},
                                           "metaobject": {"fields": dup}})["data"]["metaobjectUpsert"]
    assert payload["userErrors"][0]["code"] == "DUPLICATE_FIELD_INPUT"
    assert payload["userErrors"][0]["elementIndex"] == len(dup) - 1
    missing = r.gql(shopify_http, UPSERT, upsert_vars("pa-1", contract_values("1"), "no_such_type"))
    assert missing["data"]["metaobjectUpsert"]["userErrors"][0]["code"] == "UNDEFINED_OBJECT_TYPE"
    # blank on update of a required field is BLANK, a missing required field on update is fine
    upsert(r, shopify_http, "pa-1", contract_values("1"))
    assert upsert(r, shopify_http, "pa-1", {"sync_hash": "x"})["userErrors"] == []
    assert upsert(r, shopify_http, "pa-1", {"name": ""})["userErrors"][0]["code"] == "BLANK"


def test_aliased_batch_gives_each_alias_its_own_result(shopify_sandbox, shopify_http):
    r = shopify_sandbox
    items = [(f"pa-a{i}", contract_values(f"A{i}")) for i in range(20)]
    items[7] = ("pa-a7", contract_values("A7", is_active="maybe"))
    body = r.gql(shopify_http, batch_document(20), batch_vars(items))
    assert body["extensions"]["cost"]["requestedQueryCost"] == 200
    data = body["data"]
    assert [data[f"u{i}"]["userErrors"] == [] for i in range(20)] == [i != 7 for i in range(20)]
    assert data["u7"]["metaobject"] is None and data["u7"]["userErrors"][0]["elementKey"] == "is_active"
    assert data["u3"]["metaobject"]["handle"] == "pa-a3"
    assert r.shop.count(RECOMMENDATION_TYPE) == 19


def test_concurrent_upserts_are_all_applied(shopify_sandbox):
    r = shopify_sandbox
    ids: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        with httpx.Client(timeout=10) as client:
            for i in range(15):
                got = upsert(r, client, f"pa-t{n}-{i}", contract_values(f"T{n}-{i}"))
                with lock:
                    ids.append(got["metaobject"]["id"])

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 90 and len(set(ids)) == 90
    assert r.shop.count(RECOMMENDATION_TYPE) == 90 and r.shop.stats.upserts == 90


def test_paging_metaobjects_with_cursors(shopify_sandbox, shopify_http):
    r = shopify_sandbox
    for i in range(7):
        r.shop.upsert_metaobject(RECOMMENDATION_TYPE, f"pa-p{i}", contract_values(f"P{i}"))
    seen, after, pages = [], None, 0
    while True:
        conn = r.gql(shopify_http, LIST, {"type": RECOMMENDATION_TYPE, "first": 3, "after": after})
        conn = conn["data"]["metaobjects"]
        pages += 1
        assert [e["node"]["id"] for e in conn["edges"]] == [n["id"] for n in conn["nodes"]]
        seen += [n["handle"] for n in conn["nodes"]]
        assert conn["nodes"][0]["field"]["key"] == "sync_hash"
        if not conn["pageInfo"]["hasNextPage"]:
            break
        assert conn["pageInfo"]["endCursor"] == conn["edges"][-1]["cursor"]
        after = conn["pageInfo"]["endCursor"]
    assert pages == 3 and seen == [f"pa-p{i}" for i in range(7)]
    too_big = r.gql(shopify_http, LIST, {"type": RECOMMENDATION_TYPE, "first": 251})
    assert too_big["errors"] and too_big["data"] is None
    bad_cursor = r.gql(shopify_http, LIST, {"type": RECOMMENDATION_TYPE, "first": 3, "after": "nonsense"})
    assert "cursor" in bad_cursor["errors"][0]["message"]


# ------------------------------------------------------------------------------------------ definitions

CREATE_DEF = """
mutation Create($definition: MetaobjectDefinitionCreateInput!) {
  metaobjectDefinitionCreate(definition: $definition) {
    metaobjectDefinition { id type name displayNameKey access { admin storefront } capabilities { publishable { enabled } }
      fieldDefinitions { key name required type { name } validations { name value } } }
    userErrors { field message code }
  }
}"""

UPDATE_DEF = """
mutation Update($id: ID!, $definition: MetaobjectDefinitionUpdateInput!) {
  metaobjectDefinitionUpdate(id: $id, definition: $definition) {
    metaobjectDefinition { id fieldDefinitions { key required type { name } } }
    userErrors { field message code }
  }
}"""


def test_definition_create_update_and_lookup(shopify_http):
    with running_shopify_sandbox(with_definitions=False) as r:
        definition = {
            "type": "pa_bundle_widget", "name": "PA bundle widget", "displayNameKey": "name",
            "access": {"admin": "MERCHANT_READ_WRITE", "storefront": "PUBLIC_READ"},
            "capabilities": {"publishable": {"enabled": True}},
            "fieldDefinitions": [{"key": f.key, "name": f.name, "type": f.type, "required": f.required}
                                 for f in CONTRACT_FIELDS if f.key != "sync_hash"],
        }
        definition["fieldDefinitions"][1]["validations"] = [{"name": "max", "value": "200"}]
        created = r.gql(shopify_http, CREATE_DEF, {"definition": definition})["data"]["metaobjectDefinitionCreate"]
        d = created["metaobjectDefinition"]
        assert created["userErrors"] == [] and d["id"].startswith("gid://shopify/MetaobjectDefinition/")
        assert d["access"] == {"admin": "MERCHANT_READ_WRITE", "storefront": "PUBLIC_READ"}
        assert d["capabilities"] == {"publishable": {"enabled": True}}
        assert d["fieldDefinitions"][0] == {"key": "pa_widget_id", "name": "PA widget id", "required": True,
                                            "type": {"name": "single_line_text_field"}, "validations": []}
        assert d["fieldDefinitions"][1]["validations"] == [{"name": "max", "value": "200"}]
        taken = r.gql(shopify_http, CREATE_DEF, {"definition": definition})["data"]["metaobjectDefinitionCreate"]
        assert taken["metaobjectDefinition"] is None and taken["userErrors"][0]["code"] == "TAKEN"
        app_owned = dict(definition, type="$app:bundle")
        app_def = r.gql(shopify_http, CREATE_DEF, {"definition": app_owned})["data"]["metaobjectDefinitionCreate"]
        assert app_def["metaobjectDefinition"]["type"] == f"app--{r.shop.api_client_id}--bundle"
        no_hash = {k: v for k, v in contract_values("1").items() if k != "sync_hash"}
        assert upsert(r, shopify_http, "pa-1", no_hash, "$app:bundle")["userErrors"] == []
        assert r.shop.count(f"app--{r.shop.api_client_id}--bundle") == 1
        bad = dict(definition, type="x", fieldDefinitions=[{"key": "a_b", "type": "no_such_type"}])
        bad_errs = r.gql(shopify_http, CREATE_DEF, {"definition": bad})["data"]["metaobjectDefinitionCreate"]
        assert {e["code"] for e in bad_errs["userErrors"]} == {"INVALID", "FIELD_TYPE_INVALID"}

        ops = [{"create": {"key": "sync_hash", "name": "Sync hash", "type": "single_line_text_field"}},
               {"update": {"key": "location", "required": True}},
               {"delete": {"key": "styles"}}]
        updated = r.gql(shopify_http, UPDATE_DEF, {"id": d["id"], "definition": {"fieldDefinitions": ops}})
        fdefs = {f["key"]: f for f in updated["data"]["metaobjectDefinitionUpdate"]["metaobjectDefinition"]
                 ["fieldDefinitions"]}
        assert "sync_hash" in fdefs and "styles" not in fdefs and fdefs["location"]["required"] is True
        dup = r.gql(shopify_http, UPDATE_DEF, {"id": d["id"], "definition": {"fieldDefinitions": ops[:1]}})
        assert dup["data"]["metaobjectDefinitionUpdate"]["userErrors"][0]["code"] == "OBJECT_FIELD_TAKEN"
        gone = r.gql(shopify_http, UPDATE_DEF, {"id": "gid://shopify/MetaobjectDefinition/1", "definition": {}})
        assert gone["data"]["metaobjectDefinitionUpdate"]["userErrors"][0]["code"] == "RECORD_NOT_FOUND"

        by_type = r.gql(shopify_http, '{ a: metaobjectDefinitionByType(type: "pa_bundle_widget") { id type '
                                      'fieldDefinitions { key } } b: metaobjectDefinitionByType(type: "nope") { id } }')
        assert by_type["data"]["a"]["id"] == d["id"] and by_type["data"]["b"] is None
        assert r.shop.definitions["pa_bundle_widget"]["fieldDefinitions"][-1]["key"] == "sync_hash"
        listed = r.gql(shopify_http, "{ metaobjectDefinitions(first: 5) { nodes { type } pageInfo { hasNextPage } } }")
        assert listed["data"]["metaobjectDefinitions"] == {
            "nodes": [{"type": "pa_bundle_widget"}, {"type": f"app--{r.shop.api_client_id}--bundle"}],
            "pageInfo": {"hasNextPage": False}}


def test_field_definition_validations_are_enforced(shopify_http):
    with running_shopify_sandbox(with_definitions=False) as r:
        r.shop.create_definition("limited", [
            {"key": "code", "type": "single_line_text_field",
             "validations": [{"name": "max", "value": "5"}, {"name": "regex", "value": "^[A-Z]+$"}]},
            {"key": "size", "type": "number_integer", "validations": [{"name": "min", "value": "1"}]},
            {"key": "colour", "type": "single_line_text_field",
             "validations": [{"name": "choices", "value": '["red", "blue"]'}]},
        ])
        cases = {"code": ("TOOLONG", "TOO_LONG"), "size": ("0", "INVALID_VALUE"), "colour": ("green", "INCLUSION")}
        for key, (value, code) in cases.items():
            payload = upsert(r, shopify_http, "x-1", {key: value}, "limited")
            assert [(e["code"], e["elementKey"]) for e in payload["userErrors"]] == [(code, key)]
        assert upsert(r, shopify_http, "x-1", {"code": "abc"}, "limited")["userErrors"][0]["code"] == "INVALID_VALUE"
        ok = upsert(r, shopify_http, "x-1", {"code": "ABC", "size": "3", "colour": "red"}, "limited")
        assert ok["userErrors"] == [] and r.shop.count("limited") == 1


# ------------------------------------------------------------------------------------------ bulk

BULK_UPSERT = ("mutation call($handle: MetaobjectHandleInput!, $metaobject: MetaobjectUpsertInput!) { "
               "metaobjectUpsert(handle: $handle, metaobject: $metaobject) { metaobject { id handle } "
               "userErrors { field message code elementKey } } }")

STAGE = """
mutation { stagedUploadsCreate(input: [{resource: BULK_MUTATION_VARIABLES, filename: "bulk.jsonl",
  mimeType: "text/jsonl", httpMethod: POST}]) {
  stagedTargets { url resourceUrl parameters { name value } } userErrors { field message } } }"""

RUN = """
mutation Run($mutation: String!, $path: String!) {
  bulkOperationRunMutation(mutation: $mutation, stagedUploadPath: $path) {
    bulkOperation { id status } userErrors { field message code } } }"""

POLL = """
query Poll($id: ID!) { bulkOperation(id: $id) { id status errorCode objectCount url partialDataUrl }
  node(id: $id) { ... on BulkOperation { status } } }"""


def stage_and_upload(r: RunningShopify, client: httpx.Client, lines: list[dict]) -> str:
    target = r.gql(client, STAGE)["data"]["stagedUploadsCreate"]["stagedTargets"][0]
    params = {p["name"]: p["value"] for p in target["parameters"]}
    jsonl = "".join(json.dumps(line) + "\n" for line in lines).encode()
    resp = client.post(target["url"], data=params, files={"file": ("bulk.jsonl", jsonl, "text/jsonl")})
    assert resp.status_code == 201, resp.text
    return params["key"]


def run_bulk(r: RunningShopify, client: httpx.Client, path: str) -> dict:
    return r.gql(client, RUN, {"mutation": BULK_UPSERT, "path": path})


def poll_until_done(r: RunningShopify, client: httpx.Client, gid: str) -> dict:
    deadline = time.monotonic() + 15
    statuses = []
    while time.monotonic() < deadline:
        data = r.gql(client, POLL, {"id": gid})["data"]
        op = data["bulkOperation"]
        assert data["node"]["status"] == op["status"]
        statuses.append(op["status"])
        if op["status"] not in ("CREATED", "RUNNING"):
            op["seen"] = statuses
            return op
        time.sleep(0.02)
    raise AssertionError(f"bulk operation {gid} never finished: {statuses[-5:]}")


def test_bulk_mutation_end_to_end(shopify_sandbox, shopify_http):
    r = shopify_sandbox
    r.shop.upsert_metaobject(RECOMMENDATION_TYPE, "pa-b0", contract_values("B0", name="Old name"))
    lines = [upsert_vars(f"pa-b{i}", contract_values(f"B{i}")) for i in range(10)]
    lines[4] = upsert_vars("pa-b4", contract_values("B4", number_of_slots="four"))
    path = stage_and_upload(r, shopify_http, lines)
    spent_before = r.shop.stats.points_spent
    started = run_bulk(r, shopify_http, path)
    assert started["extensions"]["cost"]["actualQueryCost"] == 10
    payload = started["data"]["bulkOperationRunMutation"]
    assert payload["userErrors"] == [] and payload["bulkOperation"]["status"] == "CREATED"
    op = poll_until_done(r, shopify_http, payload["bulkOperation"]["id"])
    assert op["status"] == "COMPLETED" and op["errorCode"] is None
    assert op["objectCount"] == "10"  # UnsignedInt64 is a string, as on Shopify
    current = r.gql(shopify_http, "{ currentBulkOperation(type: MUTATION) { id status } }")
    assert current["data"]["currentBulkOperation"] == {"id": op["id"], "status": "COMPLETED"}

    result_lines = [json.loads(line) for line in shopify_http.get(op["url"]).text.splitlines()]
    numbers = [line["__lineNumber"] for line in result_lines]
    assert sorted(numbers) == list(range(10)) and numbers != sorted(numbers)  # complete, out of order
    by_line = {line["__lineNumber"]: line["data"]["metaobjectUpsert"] for line in result_lines}
    assert by_line[4]["metaobject"] is None
    assert by_line[4]["userErrors"][0]["code"] == "INVALID_VALUE"
    assert by_line[4]["userErrors"][0]["elementKey"] == "number_of_slots"
    assert all(by_line[i]["metaobject"]["handle"] == f"pa-b{i}" for i in range(10) if i != 4)
    assert r.shop.count(RECOMMENDATION_TYPE) == 9
    assert r.shop.metaobjects[RECOMMENDATION_TYPE]["pa-b0"]["fields"]["name"] == "Widget B0"
    # bulk lines are not charged to the bucket: only the bulkOperationRunMutation call and the polls
    polls = r.shop.stats.requests - 3  # GraphQL requests: stage, run, polls, currentBulkOperation
    assert r.shop.stats.points_spent - spent_before == 10 + polls * 2 + 1


def test_bulk_one_at_a_time_and_start_errors(shopify_sandbox, shopify_http):
    r = shopify_sandbox
    r.shop.faults.bulk_line_latency_seconds = 0.1  # keeps the first operation RUNNING for ~0.6 s
    path = stage_and_upload(r, shopify_http, [upsert_vars(f"pa-q{i}", contract_values("Q")) for i in range(6)])
    first = run_bulk(r, shopify_http, path)["data"]["bulkOperationRunMutation"]
    assert first["userErrors"] == []
    second = run_bulk(r, shopify_http, path)["data"]["bulkOperationRunMutation"]
    assert second["bulkOperation"] is None and second["userErrors"][0]["code"] == "OPERATION_IN_PROGRESS"
    done = poll_until_done(r, shopify_http, first["bulkOperation"]["id"])
    assert done["status"] == "COMPLETED" and "RUNNING" in done["seen"]
    r.shop.faults.bulk_line_latency_seconds = 0.0

    r.shop.faults.bulk_start_error_next = 1
    refused = run_bulk(r, shopify_http, path)["data"]["bulkOperationRunMutation"]
    assert refused["bulkOperation"] is None and refused["userErrors"][0]["code"] == "INTERNAL_FILE_SERVER_ERROR"
    missing = run_bulk(r, shopify_http, "tmp/1/bulk/nope/bulk.jsonl")["data"]["bulkOperationRunMutation"]
    assert missing["userErrors"][0]["code"] == "NO_SUCH_FILE"
    bad_doc = r.gql(shopify_http, RUN, {"mutation": "mutation { metaobjectUpsert { nope } }", "path": path})
    assert bad_doc["data"]["bulkOperationRunMutation"]["userErrors"][0]["code"] == "INVALID_MUTATION"
    again = run_bulk(r, shopify_http, path)["data"]["bulkOperationRunMutation"]
    assert again["userErrors"] == []
    assert poll_until_done(r, shopify_http, again["bulkOperation"]["id"])["status"] == "COMPLETED"


def test_bulk_failure_switch(shopify_sandbox, shopify_http):
    r = shopify_sandbox
    r.shop.faults.bulk_fail_next = 1
    path = stage_and_upload(r, shopify_http, [upsert_vars(f"pa-f{i}", contract_values("F")) for i in range(8)])
    op = poll_until_done(r, shopify_http, run_bulk(r, shopify_http, path)
                         ["data"]["bulkOperationRunMutation"]["bulkOperation"]["id"])
    assert op["status"] == "FAILED" and op["errorCode"] == "INTERNAL_SERVER_ERROR" and op["url"] is None
    partial = [json.loads(x) for x in shopify_http.get(op["partialDataUrl"]).text.splitlines()]
    assert sorted(line["__lineNumber"] for line in partial) == [0, 1, 2, 3]


def test_staged_upload_rejects_a_wrong_policy(shopify_sandbox, shopify_http):
    r = shopify_sandbox
    target = r.gql(shopify_http, STAGE)["data"]["stagedUploadsCreate"]["stagedTargets"][0]
    params = {p["name"]: p["value"] for p in target["parameters"]}
    params["policy"] = "forged"
    resp = shopify_http.post(target["url"], data=params, files={"file": ("b.jsonl", b"{}\n", "text/jsonl")})
    assert resp.status_code == 403



RUN_QUERY = """
mutation RunQuery($query: String!) {
  bulkOperationRunQuery(query: $query) { bulkOperation { id status type } userErrors { field message code } } }"""

BULK_LIST = ('{ metaobjects(type: "%s") { edges { node { id handle updatedAt '
             'sync_hash: field(key: "sync_hash") { value } } } } }')


def run_bulk_query(r: RunningShopify, client: httpx.Client, query: str) -> dict:
    return r.gql(client, RUN_QUERY, {"query": query})["data"]["bulkOperationRunQuery"]


def test_bulk_query_end_to_end(shopify_sandbox, shopify_http):
    r = shopify_sandbox
    for i in range(260):  # more than one page: a bulk query has no `first` limit
        r.shop.upsert_metaobject(RECOMMENDATION_TYPE, f"pa-r{i}", contract_values(f"R{i}"))
    r.shop.upsert_metaobject("pa_bundle_widget", "pa-other", contract_values("O"))
    spent_before = r.shop.stats.points_spent
    started = run_bulk_query(r, shopify_http, BULK_LIST % RECOMMENDATION_TYPE)
    assert started["userErrors"] == []
    assert started["bulkOperation"]["status"] == "CREATED" and started["bulkOperation"]["type"] == "QUERY"
    op = poll_until_done(r, shopify_http, started["bulkOperation"]["id"])
    assert op["status"] == "COMPLETED" and op["errorCode"] is None and op["objectCount"] == "260"
    current = r.gql(shopify_http, "{ q: currentBulkOperation(type: QUERY) { id type rootObjectCount } "
                                  "m: currentBulkOperation(type: MUTATION) { id } }")["data"]
    assert current == {"q": {"id": op["id"], "type": "QUERY", "rootObjectCount": "260"}, "m": None}
    # bulk queries are not charged to the bucket: only bulkOperationRunQuery (a mutation, 10), the polls (2 each)
    # and the two currentBulkOperation objects
    assert r.shop.stats.points_spent - spent_before == 10 + len(op["seen"]) * 2 + 2

    lines = [json.loads(x) for x in shopify_http.get(op["url"]).text.splitlines()]
    assert len(lines) == 260 and r.shop.stats.bulk_queries == 1 and r.shop.stats.bulk_operations == 0
    stored = r.shop.metaobjects[RECOMMENDATION_TYPE]
    assert {line["handle"] for line in lines} == set(stored)
    for line in lines:  # each node is one JSON object with exactly what was selected, aliases kept
        obj = stored[line["handle"]]
        assert line == {"id": obj["id"], "handle": obj["handle"], "updatedAt": obj["updatedAt"],
                        "sync_hash": {"value": obj["fields"]["sync_hash"]}}


def test_bulk_query_nested_connection_lines_carry_the_parent_id(shopify_sandbox, shopify_http):
    r = shopify_sandbox
    for i in range(3):
        r.shop.upsert_metaobject(RECOMMENDATION_TYPE, f"pa-n{i}", contract_values(f"N{i}"))
    query = "{ metaobjectDefinitions { nodes { id type metaobjects { nodes { id handle } } } } }"
    op = poll_until_done(r, shopify_http, run_bulk_query(r, shopify_http, query)["bulkOperation"]["id"])
    assert op["status"] == "COMPLETED"
    lines = [json.loads(x) for x in shopify_http.get(op["url"]).text.splitlines()]
    parents = [line for line in lines if "__parentId" not in line]
    assert {p["type"] for p in parents} == set(r.shop.definitions)
    rec = next(p for p in parents if p["type"] == RECOMMENDATION_TYPE)
    assert "metaobjects" not in rec
    children = [line for line in lines if line.get("__parentId") == rec["id"]]
    assert [c["handle"] for c in children] == ["pa-n0", "pa-n1", "pa-n2"]
    assert lines.index(rec) < lines.index(children[0])  # a child comes after its parent


@pytest.mark.parametrize("query, message", [
    ("{ shop { name } }", "at least one connection"),
    ("mutation { metaobjectDelete(id: \"gid://shopify/Metaobject/1\") { deletedId } }", "query operation"),
    ("{ metaobjects(type: \"x\") { edges { node { nope } } } }", "Invalid bulk query"),
    ("{ metaobjects(type: \"x\") { nodes { id } } shop { name } }", "exactly one top-level field"),
])
def test_bulk_query_refuses_what_is_not_one_connection_query(shopify_sandbox, shopify_http, query, message):
    refused = run_bulk_query(shopify_sandbox, shopify_http, query)
    assert refused["bulkOperation"] is None
    assert refused["userErrors"][0]["code"] == "INVALID" and message in refused["userErrors"][0]["message"]


def test_bulk_query_one_at_a_time_independent_of_a_bulk_mutation(shopify_sandbox, shopify_http):
    r = shopify_sandbox
    for i in range(6):
        r.shop.upsert_metaobject(RECOMMENDATION_TYPE, f"pa-o{i}", contract_values(f"O{i}"))
    r.shop.faults.bulk_line_latency_seconds = 0.1  # keeps the first query RUNNING for ~0.6 s
    try:
        first = run_bulk_query(r, shopify_http, BULK_LIST % RECOMMENDATION_TYPE)
        assert first["userErrors"] == []
        second = run_bulk_query(r, shopify_http, BULK_LIST % RECOMMENDATION_TYPE)
        assert second["bulkOperation"] is None and second["userErrors"][0]["code"] == "OPERATION_IN_PROGRESS"
        assert first["bulkOperation"]["id"] in second["userErrors"][0]["message"]
        # a bulk mutation may run beside it (one of each type per shop)
        path = stage_and_upload(r, shopify_http, [upsert_vars("pa-m0", contract_values("M0"))])
        assert run_bulk(r, shopify_http, path)["data"]["bulkOperationRunMutation"]["userErrors"] == []
        # from API version 2026-01 a shop runs up to five bulk queries at once
        newer = shopify_http.post(f"{r.admin_url}/admin/api/2026-01/graphql.json",
                                  json={"query": RUN_QUERY, "variables": {"query": BULK_LIST % RECOMMENDATION_TYPE}},
                                  headers={"X-Shopify-Access-Token": ACCESS_TOKEN}).json()
        assert newer["data"]["bulkOperationRunQuery"]["userErrors"] == []
        done = poll_until_done(r, shopify_http, first["bulkOperation"]["id"])
        assert done["status"] == "COMPLETED" and "RUNNING" in done["seen"]
    finally:
        r.shop.faults.bulk_line_latency_seconds = 0.0
    r.sandbox.wait_for_bulk()
    again = run_bulk_query(r, shopify_http, BULK_LIST % RECOMMENDATION_TYPE)  # the earlier ones are done
    assert again["userErrors"] == []
    assert poll_until_done(r, shopify_http, again["bulkOperation"]["id"])["status"] == "COMPLETED"


def test_bulk_query_failure_switch_and_an_empty_result(shopify_sandbox, shopify_http):
    r = shopify_sandbox
    for i in range(8):
        r.shop.upsert_metaobject(RECOMMENDATION_TYPE, f"pa-e{i}", contract_values(f"E{i}"))
    r.shop.faults.bulk_query_fail_next = 1
    op = poll_until_done(r, shopify_http, run_bulk_query(r, shopify_http, BULK_LIST % RECOMMENDATION_TYPE)
                         ["bulkOperation"]["id"])
    assert op["status"] == "FAILED" and op["errorCode"] == "INTERNAL_SERVER_ERROR" and op["url"] is None
    partial = [json.loads(x) for x in shopify_http.get(op["partialDataUrl"]).text.splitlines()]
    assert len(partial) == 4 and r.shop.faults.bulk_query_fail_next == 0
    # the switch was used up: the next query completes; a type without metaobjects completes without a file
    op = poll_until_done(r, shopify_http, run_bulk_query(r, shopify_http, BULK_LIST % "pa_bundle_widget")
                         ["bulkOperation"]["id"])
    assert (op["status"], op["objectCount"], op["url"]) == ("COMPLETED", "0", None)


def test_metaobjects_count_follows_creates_and_deletes(shopify_sandbox, shopify_http):
    r = shopify_sandbox
    count = 'query C($t: String!) { metaobjectDefinitionByType(type: $t) { id metaobjectsCount } }'
    before = r.gql(shopify_http, count, {"t": RECOMMENDATION_TYPE})["data"]["metaobjectDefinitionByType"]
    assert before["metaobjectsCount"] == 0
    made = [upsert(r, shopify_http, f"pa-c{i}", contract_values(f"C{i}"))["metaobject"]["id"] for i in range(3)]
    upsert(r, shopify_http, "pa-c0", contract_values("C0", name="Renamed"))  # an update is not a new one
    r.gql(shopify_http, DELETE, {"id": made[1]})
    body = r.gql(shopify_http, 'query D($id: ID!) { metaobjectDefinition(id: $id) { metaobjectsCount } }',
                 {"id": before["id"]})
    assert body["data"]["metaobjectDefinition"]["metaobjectsCount"] == 2
    assert body["extensions"]["cost"]["actualQueryCost"] == 1  # the definition object; the count is a scalar


# ------------------------------------------------------------------------------------------ faults


def test_missing_or_wrong_token_is_401(shopify_sandbox, shopify_http):
    r = shopify_sandbox
    for token in ("", "shpat_wrong"):
        resp = r.post(shopify_http, "{ shop { name } }", token=token)
        assert resp.status_code == 401
        assert resp.json() == {"errors": "[API] Invalid API key or access token "
                                         "(unrecognized login or wrong password)"}
        assert ACCESS_TOKEN not in resp.text


@pytest.mark.parametrize("status", [401, 402, 403, 423])
def test_http_status_switch(shopify_sandbox, shopify_http, status):
    r = shopify_sandbox
    r.shop.faults.http_status = status
    resp = r.post(shopify_http, UPSERT, upsert_vars("pa-1", contract_values("1")))
    assert resp.status_code == status and "errors" in resp.json()
    r.shop.faults.http_status = None
    assert r.shop.count(RECOMMENDATION_TYPE) == 0
    assert r.post(shopify_http, "{ shop { name } }").status_code == 200


def test_fail_next_answers_5xx_then_recovers(shopify_sandbox, shopify_http):
    r = shopify_sandbox
    r.shop.faults.fail_next = 2
    r.shop.faults.fail_status = 504
    first = r.post(shopify_http, UPSERT, upsert_vars("pa-1", contract_values("1")))
    second = r.post(shopify_http, UPSERT, upsert_vars("pa-1", contract_values("1")))
    assert (first.status_code, second.status_code) == (504, 504)
    assert {first.headers["content-type"].split(";")[0], second.headers["content-type"].split(";")[0]} == \
        {"text/html", "application/json"}
    assert r.shop.count(RECOMMENDATION_TYPE) == 0
    assert upsert(r, shopify_http, "pa-1", contract_values("1"))["userErrors"] == []


def test_internal_error_next_is_a_200_with_request_id_and_applies_nothing(shopify_sandbox, shopify_http):
    r = shopify_sandbox
    r.shop.faults.internal_error_next = 1
    resp = r.post(shopify_http, UPSERT, upsert_vars("pa-1", contract_values("1")))
    assert resp.status_code == 200
    err = resp.json()["errors"][0]
    assert err["extensions"]["code"] == "INTERNAL_SERVER_ERROR" and err["extensions"]["requestId"]
    assert "data" not in resp.json() and r.shop.count(RECOMMENDATION_TYPE) == 0
    assert upsert(r, shopify_http, "pa-1", contract_values("1"))["userErrors"] == []


def test_drop_after_apply_applies_then_breaks_the_response(shopify_sandbox, shopify_http):
    r = shopify_sandbox
    r.shop.faults.drop_after_apply_next = 1
    assert r.gql(shopify_http, "{ shop { name } }")["data"]["shop"]["name"] == r.shop_key  # queries untouched
    with pytest.raises(httpx.RemoteProtocolError):
        r.post(shopify_http, UPSERT, upsert_vars("pa-1", contract_values("1")))
    assert r.shop.count(RECOMMENDATION_TYPE) == 1  # the mutation went through
    retried = upsert(r, shopify_http, "pa-1", contract_values("1"))
    assert retried["userErrors"] == [] and r.shop.count(RECOMMENDATION_TYPE) == 1


def test_latency_switch_delays_answers(shopify_sandbox):
    r = shopify_sandbox
    r.shop.faults.latency_seconds = 1.0
    with httpx.Client(timeout=0.2) as impatient, pytest.raises(httpx.ReadTimeout):
        r.post(impatient, "{ shop { name } }")
    r.shop.faults.latency_seconds = 0.0
    with httpx.Client(timeout=5) as client:
        assert r.post(client, "{ shop { name } }").status_code == 200


def test_failing_handles_give_that_user_error_code(shopify_sandbox, shopify_http):
    r = shopify_sandbox
    r.shop.faults.failing_handles = {"pa-bad": "INTERNAL_ERROR"}
    items = [("pa-good", contract_values("G")), ("pa-bad", contract_values("B"))]
    data = r.gql(shopify_http, batch_document(2), batch_vars(items))["data"]
    assert data["u0"]["userErrors"] == []
    assert data["u1"]["metaobject"] is None
    assert data["u1"]["userErrors"][0]["code"] == "INTERNAL_ERROR" and data["u1"]["userErrors"][0]["message"]
    assert set(r.shop.metaobjects[RECOMMENDATION_TYPE]) == {"pa-good"}


def test_stats_count_requests_writes_and_points(shopify_sandbox, shopify_http):
    r = shopify_sandbox
    gid = upsert(r, shopify_http, "pa-1", contract_values("1"))["metaobject"]["id"]
    r.gql(shopify_http, DELETE, {"id": gid})
    r.post(shopify_http, "{ shop { name } }", token="wrong")
    s = r.shop.stats
    assert (s.requests, s.upserts, s.deletes, s.mutations_applied, s.points_spent) == (3, 1, 1, 2, 20)
