"""sync_store_plain (sync/plain.py): one store's whole sync without Dagster, against the sandbox over HTTP."""

from __future__ import annotations

import pytest

from pa_widget_pipeline.pa.client import PAClient
from pa_widget_pipeline.pa.errors import PAError
from pa_widget_pipeline.sandbox.runner import DEFAULT_API_VERSION
from pa_widget_pipeline.shopify.metaobjects import make_shopify_client
from pa_widget_pipeline.sync.plain import sync_store_plain

ALL_TYPES = [1, 2, 3, 4, 5, 6, 7, 8, 9]


def clients(stores, key, **shopify_options):
    handle = stores.stores[key]
    prefix = key.upper().replace("-", "_")
    pa = PAClient(store=key, api_url=stores.sandbox.pa_url, auth_url=stores.sandbox.pa_url,
                  website_id=handle.website_id, client_id=handle.env[f"{prefix}_PA_CLIENT_ID"],
                  client_secret=handle.env[f"{prefix}_PA_CLIENT_SECRET"], retry_budget_seconds=0.5)
    shopify = make_shopify_client(store=key, admin_url=stores.sandbox.admin_url(key), api_version=DEFAULT_API_VERSION,
                                  access_token=handle.env[f"{prefix}_SHOPIFY_TOKEN"], **shopify_options)
    return pa, shopify


def sync(stores, key, on_progress=None, rewrite_unchanged=False, **shopify_options):
    pa, shopify = clients(stores, key, **shopify_options)
    with pa, shopify:
        return sync_store_plain(store=key, pa_client=pa, shopify_client=shopify, on_progress=on_progress,
                                rewrite_unchanged=rewrite_unchanged)


def accounted(result) -> bool:
    return result.total == result.synced + result.unchanged + result.skipped + result.failed


def test_first_sync_writes_every_synced_widget_and_a_resync_writes_nothing(stores):
    store = stores.add("plain-ok", types=ALL_TYPES * 2)
    progress = []
    first = sync(stores, "plain-ok", on_progress=lambda *call: progress.append(call))
    assert (first.status, first.total, first.synced, first.skipped, first.failed) == ("success", 18, 6, 12, 0)
    assert accounted(first) and first.aborted == {}
    assert {k: r.created for k, r in first.types.items()} == {"recommendation": 2, "merchandising": 2, "bundle": 2}
    assert sum(len(v) for v in store.shop.metaobjects.values()) == 6
    assert {(k, phase, total) for k, phase, _, total in progress} == {
        ("recommendation", "upsert", 2), ("merchandising", "upsert", 2), ("bundle", "upsert", 2)}
    assert set(first.seconds) == {"fetch", "group", "recommendation", "merchandising", "bundle"}

    upserts = store.shop.stats.upserts
    second = sync(stores, "plain-ok")
    assert (second.status, second.synced, second.unchanged, second.failed) == ("success", 0, 6, 0)
    assert store.shop.stats.upserts == upserts

    third = sync(stores, "plain-ok", rewrite_unchanged=True)  # the repair option writes every widget again
    assert (third.status, third.synced, third.unchanged) == ("success", 6, 0)
    assert store.shop.stats.upserts == upserts + 6


def test_a_broken_definition_fails_only_its_type(stores):
    store = stores.add("plain-broken", types=[1, 5, 6, 5, 2], broken={"bundle": "slots"})
    result = sync(stores, "plain-broken")
    assert (result.status, result.synced, result.skipped, result.failed) == ("partial", 2, 1, 2)
    assert accounted(result)
    assert {e.code for e in result.types["bundle"].errors} == {"DEFINITION_MISMATCH"}
    assert result.aborted == {}  # a failed check is an outcome, not an abort
    assert store.shop.metaobjects.get("pa_bundle_widget", {}) == {}
    assert len(store.shop.metaobjects["pa_merchandising_widget"]) == 1


def test_a_shopify_failure_aborts_one_type_and_the_others_still_sync(stores):
    store = stores.add("plain-abort", types=[1, 1, 6, 5])
    store.shop.faults.fail_next = 1  # the first request: the recommendation definition
    result = sync(stores, "plain-abort", max_attempts=1)
    assert set(result.aborted) == {"recommendation"} and "ShopifyRetriesExhausted" in result.aborted["recommendation"]
    rec = result.types["recommendation"]
    assert (rec.failed, rec.synced) == (2, 0) and {e.code for e in rec.errors} == {"NOT_SYNCED"}
    assert (result.status, result.synced, result.failed) == ("partial", 2, 2)
    assert accounted(result)
    assert "pa_recommendation_widget" not in store.shop.metaobjects or not store.shop.metaobjects[
        "pa_recommendation_widget"]


def test_a_pa_failure_is_raised(stores):
    stores.add("plain-pa-down", types=[1])
    stores.sandbox.pa.faults.down = True
    try:
        with pytest.raises(PAError):
            sync(stores, "plain-pa-down")
    finally:
        stores.sandbox.pa.faults.down = False
