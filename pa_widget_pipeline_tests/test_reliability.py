"""Issue 7, faults: each test switches on one failure of the PA or Shopify sandbox (or kills a run) and checks what
the graph does about it, end to end through Dagster over real HTTP: what was written, what was not, and what the
sync history says. No test asserts on time; waits are kept short with the retry-budget environment knobs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pa_widget_pipeline.defs import resources as resources_module
from pa_widget_pipeline.defs.history import read_history
from pa_widget_pipeline.defs.launch import sync_stores
from pa_widget_pipeline.defs.resources import PA_RETRY_BUDGET_ENV, SHOPIFY_RETRY_BUDGET_ENV, WidgetSyncResource
from pa_widget_pipeline.pa.client import PAClient
from pa_widget_pipeline.pa.models import Widget
from pa_widget_pipeline.sync.mapping import metaobject_handle, widget_fields
from pa_widget_pipeline_tests.harness import widgets_of_types

REC, MERCH, BUNDLE = "pa_recommendation_widget", "pa_merchandising_widget", "pa_bundle_widget"
# Three PA pages of 200: five synced widgets, the rest of a type that is not synced (cheap: nothing to write).
THREE_PAGES = [1] * 5 + [2] * 445


def sync(instance, *keys, **options):
    with open(os.devnull, "w") as out:
        return sync_stores(instance, list(keys), out=out, **options)


def snapshot(shop) -> dict[str, dict[str, dict[str, str]]]:
    """type -> handle -> field values: what a store holds, ids left out (they differ between stores)."""
    with shop.lock:
        return {t: {h: dict(o["fields"]) for h, o in objs.items()} for t, objs in shop.metaobjects.items() if objs}


def expected_fields(raw: dict) -> dict[str, str]:
    """What the sandbox should hold for a widget (blank values are not stored, as in Shopify)."""
    return {k: v for k, v in widget_fields(Widget.model_validate(raw)).items() if v != ""}


@pytest.fixture
def pa_sleeps(monkeypatch) -> list[float]:
    """Every wait the PA client of a sync makes (it still really sleeps): proves Retry-After is honoured."""
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    class RecordingPAClient(PAClient):
        def __init__(self, **kwargs):
            super().__init__(**kwargs, sleep=sleep)

    monkeypatch.setattr(resources_module, "PAClient", RecordingPAClient)
    return waits


def page_statuses(sandbox, website_id: str) -> list[tuple[int | None, int]]:
    return [(r.page, r.status) for r in sandbox.pa.requests if r.website_id == website_id]


# ------------------------------------------------------------------------------------------------------------- PA


def test_pa_5xx_on_page_k_of_n_is_retried_to_success(stores, dagster_instance, sandbox):
    store = stores.add("pa-flaky", types=THREE_PAGES)
    sandbox.pa.faults.fail_on_page = {2: 2}
    [entry] = sync(dagster_instance, "pa-flaky")
    assert entry.status == "success", entry.message
    assert (entry.total, entry.synced, entry.skipped, entry.failed) == (450, 5, 445, 0)
    assert page_statuses(sandbox, store.website_id) == [(1, 200), (2, 503), (2, 503), (2, 200), (3, 200)]
    assert store.shop.count(REC) == 5


def test_pa_5xx_past_retry_budget_fails_store_deletes_nothing_and_says_why(
        stores, dagster_instance, sandbox, monkeypatch):
    monkeypatch.setenv(PA_RETRY_BUDGET_ENV, "1")
    store = stores.add("pa-broken-page", types=THREE_PAGES)
    [first] = sync(dagster_instance, "pa-broken-page")
    assert first.status == "success"
    # PA drops a widget (the next complete fetch would delete its metaobject) and then page 2 keeps failing.
    widgets = sandbox.pa.widgets(store.website_id)
    sandbox.pa.set_widgets(store.website_id, widgets[1:])
    sandbox.pa.faults.fail_on_page = {2: 10_000}
    before = snapshot(store.shop)

    [entry] = sync(dagster_instance, "pa-broken-page")
    assert entry.status == "failed" and entry.total == 0
    assert "pa_widgets" in entry.message and "'pa-broken-page'" in entry.message
    assert "widget list page 2" in entry.message and "retry budget 1s" in entry.message
    assert "HTTP 503" in entry.message
    assert snapshot(store.shop) == before and store.shop.stats.deletes == 0
    assert [e.status for e in read_history(dagster_instance, store="pa-broken-page")] == ["success", "failed"]


def test_pa_token_expiring_mid_fetch_is_renewed_once_and_the_fetch_completes(stores, dagster_instance, sandbox):
    store = stores.add("pa-expiry", types=THREE_PAGES)
    sandbox.pa.faults.expire_tokens_after_pages = 1
    [entry] = sync(dagster_instance, "pa-expiry")
    assert entry.status == "success", entry.message
    assert (entry.total, entry.synced) == (450, 5)
    assert page_statuses(sandbox, store.website_id) == [(1, 200), (2, 401), (2, 200), (3, 200)]
    token_requests = [r for r in sandbox.pa.requests if r.path == "/auth/connect/token"]
    assert [r.status for r in token_requests] == [200, 200]


def test_pa_429_storm_honours_retry_after_and_succeeds(stores, dagster_instance, sandbox, pa_sleeps):
    store = stores.add("pa-429", types=[1, 6, 5])
    sandbox.pa.faults.rate_limit_next = 2
    sandbox.pa.faults.retry_after = 1
    [entry] = sync(dagster_instance, "pa-429")
    assert entry.status == "success" and entry.synced == 3
    assert page_statuses(sandbox, store.website_id) == [(1, 429)] * 2 + [(1, 200)]
    assert pa_sleeps == [1.0, 1.0]  # Retry-After, not the client's own backoff


def test_pa_429_storm_total_wait_is_bounded_by_the_retry_budget(
        stores, dagster_instance, sandbox, pa_sleeps, monkeypatch):
    monkeypatch.setenv(PA_RETRY_BUDGET_ENV, "1.5")
    store = stores.add("pa-429-storm", types=[1, 6])
    sandbox.pa.faults.rate_limit_next = 1_000
    sandbox.pa.faults.retry_after = 1
    [entry] = sync(dagster_instance, "pa-429-storm")
    assert entry.status == "failed" and "HTTP 429" in entry.message and "retry budget 1.5s" in entry.message
    assert 1 <= len(pa_sleeps) and sum(pa_sleeps) <= 1.5 and all(w == 1.0 for w in pa_sleeps)
    assert len(page_statuses(sandbox, store.website_id)) == len(pa_sleeps) + 1  # gave up, did not hammer PA
    # A Retry-After beyond the budget is not slept at all: the store fails at once.
    pa_sleeps.clear()
    sandbox.pa.faults.retry_after = 3600
    [again] = sync(dagster_instance, "pa-429-storm")
    assert again.status == "failed" and pa_sleeps == []
    assert store.shop.stats.requests == 0


def test_pa_down_for_the_whole_run_fails_the_store_and_touches_nothing(
        stores, dagster_instance, sandbox, monkeypatch):
    monkeypatch.setenv(PA_RETRY_BUDGET_ENV, "1")
    store = stores.add("pa-outage", types=[1, 6, 5])
    sandbox.pa.faults.down = True
    [entry] = sync(dagster_instance, "pa-outage")
    assert entry.status == "failed" and entry.total == 0
    assert "pa_widgets" in entry.message and "'pa-outage'" in entry.message
    assert "token request" in entry.message and "HTTP 503" in entry.message
    assert store.shop.stats.requests == 0
    assert all(r.status == 503 for r in sandbox.pa.requests)


# -------------------------------------------------------------------------------------------------------- Shopify


def test_shopify_throttled_storm_slows_the_writes_down_and_every_widget_lands_once(stores, dagster_instance):
    store = stores.add("throttled", types=[1] * 12 + [6] * 6 + [5] * 6, bucket_size=400, restore_rate=2000)
    shop = store.shop
    stop = threading.Event()

    def storm() -> None:
        # Another app sharing the bucket keeps draining it until the sync has been THROTTLED ten times; the
        # THROTTLED answers alternate between HTTP 200 and HTTP 429 (Shopify sends both).
        deadline = time.monotonic() + 30
        while not stop.is_set() and shop.stats.throttled < 10 and time.monotonic() < deadline:
            if shop.stats.requests:
                shop.faults.throttle_http_status = 429 if shop.stats.throttled % 2 else 200
                shop.bucket.set_available(0)
            time.sleep(0.02)

    drainer = threading.Thread(target=storm, daemon=True)
    drainer.start()
    try:
        [entry] = sync(dagster_instance, "throttled")
    finally:
        stop.set()
        drainer.join()
    assert shop.stats.throttled >= 10
    assert entry.status == "success", entry.message
    assert (entry.synced, entry.failed) == (24, 0)
    assert (shop.count(REC), shop.count(MERCH), shop.count(BUNDLE)) == (12, 6, 6)
    assert shop.stats.upserts == 24  # THROTTLED answers applied nothing; each widget written exactly once


def test_shopify_5xx_burst_is_retried_and_every_widget_synced(stores, dagster_instance):
    store = stores.add("burst", types=[1, 1, 6, 5])
    store.shop.faults.fail_next = 2
    store.shop.faults.fail_status = 502
    [entry] = sync(dagster_instance, "burst")
    assert entry.status == "success", entry.message
    assert entry.synced == 4 and store.shop.stats.upserts == 4
    assert store.shop.stats.faults_served == 2


def test_shopify_5xx_past_retry_budget_fails_the_store_and_deletes_nothing(
        stores, dagster_instance, sandbox, monkeypatch):
    monkeypatch.setenv(SHOPIFY_RETRY_BUDGET_ENV, "0.5")
    store = stores.add("shop-outage", types=[1, 1, 6, 5])
    sync(dagster_instance, "shop-outage")
    widgets = sandbox.pa.widgets(store.website_id)
    sandbox.pa.set_widgets(store.website_id, widgets[1:])  # one delete would be planned
    before = snapshot(store.shop)
    store.shop.faults.fail_next = 10_000
    [entry] = sync(dagster_instance, "shop-outage")
    assert entry.status == "failed" and entry.failed == 3
    assert "SHOPIFY_UNAVAILABLE" in entry.message or "still failing" in entry.message
    assert "'shop-outage'" in entry.message and "HTTP 503" in entry.message
    assert {e.code for e in entry.errors} == {"NOT_SYNCED"}
    assert snapshot(store.shop) == before and store.shop.stats.deletes == 0


def test_shopify_connection_dropped_after_upsert_applied_is_neither_duplicated_nor_counted_twice(
        stores, dagster_instance):
    store = stores.add("dropped", types=[1] * 6 + [6] * 2)
    shop = store.shop
    shop.faults.drop_after_apply_next = 1
    [entry] = sync(dagster_instance, "dropped")
    assert shop.stats.faults_served == 1
    assert entry.status == "success", entry.message
    assert (entry.total, entry.synced, entry.failed) == (8, 8, 0)
    assert shop.stats.upserts > 8  # the dropped batch really was applied, then written again by the retry
    assert (shop.count(REC), shop.count(MERCH)) == (6, 2)
    ids = [o["id"] for objs in shop.metaobjects.values() for o in objs.values()]
    assert len(ids) == len(set(ids)) == 8
    [again] = sync(dagster_instance, "dropped")
    assert (again.synced, again.unchanged) == (0, 8)


def test_shopify_internal_error_on_one_handle_fails_that_widget_only(stores, dagster_instance, sandbox):
    store = stores.add("one-bad-handle", types=[1, 1, 1, 6, 5])
    victim = sandbox.pa.widgets(store.website_id)[1]
    store.shop.faults.failing_handles = {metaobject_handle(victim["id"]): "INTERNAL_ERROR"}
    [entry] = sync(dagster_instance, "one-bad-handle")
    assert entry.status == "partial"
    assert (entry.synced, entry.failed) == (4, 1)
    [error] = entry.errors
    assert (error.widget_id, error.type, error.code) == (victim["id"], "recommendation", "INTERNAL_ERROR")
    assert metaobject_handle(victim["id"]) in error.message
    assert store.shop.count(REC) == 2 and metaobject_handle(victim["id"]) not in store.shop.metaobjects[REC]


def test_shopify_401_402_403_423_fail_their_store_and_the_others_sync(stores, dagster_instance):
    refusals = {401: "access token was rejected", 402: "frozen", 403: "lacks a required scope", 423: "locked"}
    for status in refusals:
        stores.add(f"refused-{status}", types=[1, 6, 5]).shop.faults.http_status = status
    good = stores.add("neighbour", types=[1, 6, 5])
    *refused, neighbour = sync(dagster_instance, *(f"refused-{s}" for s in refusals), "neighbour")
    for entry, (status, words) in zip(refused, refusals.items()):
        assert entry.status == "failed" and entry.synced == 0, entry
        assert f"store 'refused-{status}': HTTP {status}" in entry.message and words in entry.message
        assert stores.stores[entry.store].shop.stats.upserts == 0
    assert neighbour.status == "success" and neighbour.synced == 3
    assert good.shop.count(REC) == 1


def test_definition_changed_between_check_and_writes(stores, dagster_instance, sandbox, monkeypatch):
    """The check passes, then someone removes `slots` from the bundle definition before the writes: the bundle
    widgets fail with Shopify's userErrors, no metaobject is deleted, other types sync; once the field is back
    (the operator runs ensure_metaobject_definitions), the next sync converges."""
    from pa_widget_pipeline.definitions import defs

    store = stores.add("moving-target", types=[1, 6, 5, 5, 5])
    shop = store.shop
    [first] = sync(dagster_instance, "moving-target")
    assert first.status == "success"
    widgets = [{**w, "name": w["name"] + " (new)"} if w["type"] == 5 else w
               for w in sandbox.pa.widgets(store.website_id)]
    sandbox.pa.set_widgets(store.website_id, widgets)
    bundle_handles = {metaobject_handle(w["id"]) for w in widgets if w["type"] == 5}

    original = WidgetSyncResource.shopify_client
    fired: list[str] = []

    def shopify_client(self, store_config):
        client = original(self, store_config)
        check = client.definition_by_type

        def definition_by_type(metaobject_type):
            definition = check(metaobject_type)
            if metaobject_type == BUNDLE and not fired:
                fired.append(metaobject_type)
                shop.remove_definition_field(BUNDLE, "slots")  # lands after the check, before the writes
            return definition

        client.definition_by_type = definition_by_type
        return client

    monkeypatch.setattr(WidgetSyncResource, "shopify_client", shopify_client)
    [entry] = sync(dagster_instance, "moving-target")
    monkeypatch.setattr(WidgetSyncResource, "shopify_client", original)
    assert fired == [BUNDLE]
    assert entry.status == "partial" and (entry.unchanged, entry.failed) == (2, 3)
    assert {e.code for e in entry.errors} == {"UNDEFINED_OBJECT_FIELD"}
    for error in entry.errors:
        assert error.type == "bundle" and "Field definition 'slots' does not exist" in error.message
    assert set(shop.metaobjects[BUNDLE]) == bundle_handles and shop.stats.deletes == 0

    fix = defs.resolve_job_def("ensure_metaobject_definitions").execute_in_process(
        instance=dagster_instance,
        run_config={"ops": {"ensure_definitions_for_stores": {
            "config": {"stores": ["moving-target"], "add_missing_fields": True}}}},
    )
    assert fix.success
    [healed] = sync(dagster_instance, "moving-target")
    assert healed.status == "success" and (healed.synced, healed.unchanged) == (3, 2)
    held = snapshot(shop)
    for w in widgets:
        mo_type = {1: REC, 6: MERCH, 5: BUNDLE}[w["type"]]
        assert held[mo_type][metaobject_handle(w["id"])] == expected_fields(w)


# ------------------------------------------------------------------------------------------------------- SIGKILL


def _wait_for(predicate, what: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the sync process ended (exit {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def test_run_killed_mid_writes_is_failed_in_history_and_the_next_run_converges(
        stores, sandbox, tmp_path, monkeypatch):
    """`pa-widget-sync sync` in its own process, SIGKILLed while its upserts are going out.

    A process killed this way never records its end: its run stays STARTED in run storage. In production the
    daemon's run monitoring (`run_monitoring` in dagster.yaml) notices the dead worker and marks the run failed;
    with no daemon here the test does what the monitor does, `instance.report_run_failed(run)`. The history must
    then show a failed run, and the next run must leave exactly what an uninterrupted sync leaves (compared with a
    reference store fed the same widgets)."""
    from dagster import DagsterInstance, DagsterRunStatus

    website = "5f0c4a52-7d4e-4d8e-9a41-0c2d7e9b1a10"
    widgets = widgets_of_types(website, [1] * 40 + [6] * 10 + [5] * 10 + [2] * 5)
    # A small cost bucket makes small batches; with the latency the writes take a few seconds.
    victim = stores.add("killed", widgets=widgets, bucket_size=120, restore_rate=1000)
    reference = stores.add("reference", widgets=widgets)
    victim.shop.faults.latency_seconds = 0.15

    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    cli = Path(sys.executable).with_name("pa-widget-sync")
    log = (tmp_path / "killed.log").open("w")
    proc = subprocess.Popen([str(cli), "sync", "--store", "killed"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        _wait_for(lambda: victim.shop.stats.upserts >= 5, "the first upserts", proc=proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        log.close()
    assert proc.returncode == -signal.SIGKILL
    written = victim.shop.stats.upserts
    assert 5 <= written < 60, "the kill must land mid-writes"

    victim.shop.faults.latency_seconds = 0.0
    with DagsterInstance.get() as instance:
        [run] = instance.get_runs()
        assert run.status == DagsterRunStatus.STARTED  # nobody recorded the end
        [shown] = read_history(instance, store="killed")
        assert shown.status == "running"
        instance.report_run_failed(run)  # what run monitoring does in production
        [dead] = read_history(instance, store="killed")
        assert dead.status in ("failed", "partial") and dead.ended_at is not None
        assert dead.total == 65 and dead.failed > 0
        assert dead.total == dead.synced + dead.unchanged + dead.skipped + dead.failed
        assert any(e.code == "NOT_SYNCED" for e in dead.errors)

        healed, ref = sync(instance, "killed", "reference")
        assert healed.status == "success" and ref.status == "success", (healed.message, ref.message)
        assert healed.synced + healed.unchanged == 60 and healed.unchanged > 0  # what the killed run wrote stays
        assert [e.status for e in read_history(instance, store="killed")] == [dead.status, "success"]

    assert snapshot(victim.shop) == snapshot(reference.shop)
    assert sum(len(v) for v in snapshot(victim.shop).values()) == 60
