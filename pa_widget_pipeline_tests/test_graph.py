"""The sync graph through Dagster against the sandbox over HTTP: outcomes, diff, deletes, history."""

import json

import pytest
from dagster import AssetCheckKey, AssetKey, DagsterEventType

from pa_widget_pipeline.cli import main as cli_main
from pa_widget_pipeline.definitions import defs
from pa_widget_pipeline.defs.history import history_dataframe, read_history
from pa_widget_pipeline.defs.launch import sync_stores
from pa_widget_pipeline.sandbox.pa_server import make_widget
from pa_widget_pipeline_tests.harness import widgets_of_types

ALL_TYPES = [1, 2, 3, 4, 5, 6, 7, 8, 9]


def handles(shop, metaobject_type):
    return set(shop.metaobjects.get(metaobject_type, {}))


def sync(instance, *keys, **options):
    return sync_stores(instance, list(keys), out=open("/dev/null", "w"), **options)


def test_healthy_store_success_with_skipped_types_and_metaobjects_written(stores, dagster_instance):
    store = stores.add("healthy", types=ALL_TYPES * 2)
    [entry] = sync(dagster_instance, "healthy")
    assert entry.status == "success" and entry.trigger == "manual"
    assert (entry.total, entry.synced, entry.skipped, entry.failed) == (18, 6, 12, 0)
    assert entry.total == entry.synced + entry.unchanged + entry.skipped + entry.failed
    assert entry.ended_at >= entry.started_at
    rec = store.shop.metaobjects["pa_recommendation_widget"]
    assert len(rec) == 2 and all(h.startswith("pa-") for h in rec)
    some = next(iter(rec.values()))
    assert set(some["fields"]) >= {"pa_widget_id", "name", "sync_hash", "slots", "header"}
    assert json.loads(some["fields"]["slots"])  # a JSON string, as Shopify stores json fields


def test_broken_definition_is_partial_writes_nothing_of_that_type_and_fails_the_check(stores, dagster_instance):
    store = stores.add("broken", types=[1, 5, 6, 5], broken={"bundle": "slots"})
    [entry] = sync(dagster_instance, "broken")
    assert entry.status == "partial"
    assert (entry.synced, entry.failed) == (2, 2)
    assert {e.code for e in entry.errors} == {"DEFINITION_MISMATCH"}
    assert all("missing fields: slots" in e.message for e in entry.errors)
    assert "bundle_metaobjects" in entry.message
    assert handles(store.shop, "pa_bundle_widget") == set()
    assert len(handles(store.shop, "pa_merchandising_widget")) == 1

    check_key = AssetCheckKey(AssetKey("bundle_metaobjects"), "definition_matches")
    record = dagster_instance.get_latest_asset_check_evaluation_record(check_key)
    evaluation = record.event.dagster_event.event_specific_data
    assert evaluation.passed is False and record.partition == "broken"
    assert evaluation.metadata["missing_keys"].data == ["slots"]
    failures = dagster_instance.all_logs(entry.run_id, of_type={DagsterEventType.STEP_FAILURE})
    assert [f.step_key for f in failures] == ["bundle_metaobjects"]


def test_fix_definition_then_backfill_failed_partition_turns_success(stores, dagster_instance):
    store = stores.add("fixme", types=[1, 5, 5], broken={"bundle": "slots"})
    [first] = sync(dagster_instance, "fixme")
    assert first.status == "partial"

    fix = defs.resolve_job_def("ensure_metaobject_definitions").execute_in_process(
        instance=dagster_instance,
        run_config={"ops": {"ensure_definitions_for_stores": {"config": {"stores": ["fixme"],
                                                                         "add_missing_fields": True}}}},
    )
    assert fix.success
    report = fix.output_for_node("ensure_definitions_for_stores")  # None, the report is metadata
    assert report is None
    assert "slots" in {f["key"] for f in store.shop.definitions["pa_bundle_widget"]["fieldDefinitions"]}

    # What a backfill of the failed partition launches: the failed asset for that partition, tagged by Dagster.
    job = defs.resolve_job_def("sync_store")
    result = job.execute_in_process(
        instance=dagster_instance, partition_key="fixme", asset_selection=[AssetKey("bundle_metaobjects")],
        tags={"dagster/backfill": "bkfill01"}, raise_on_error=False,
    )
    assert result.success
    entries = read_history(dagster_instance, store="fixme")
    assert [(e.status, e.trigger) for e in entries] == [("partial", "manual"), ("success", "backfill")]
    assert (entries[-1].total, entries[-1].synced, entries[-1].failed) == (2, 2, 0)
    assert len(handles(store.shop, "pa_bundle_widget")) == 2


def test_resync_writes_nothing_when_nothing_changed(stores, dagster_instance):
    store = stores.add("steady", types=[1, 6, 5] * 4)
    sync(dagster_instance, "steady")
    upserts_before = store.shop.stats.upserts
    [again] = sync(dagster_instance, "steady")
    assert again.status == "success"
    assert (again.synced, again.unchanged) == (0, 12)
    assert store.shop.stats.upserts == upserts_before


def test_changed_widget_is_updated_and_removed_widget_deleted(stores, dagster_instance, sandbox):
    store = stores.add("moving", types=[1, 1, 1, 6])
    widgets = widgets_of_types(store.website_id, [1, 1, 1, 6])
    sync(dagster_instance, "moving")
    widgets[0] = {**widgets[0], "name": "Renamed in PA"}
    removed = widgets.pop(1)
    sandbox.pa.set_widgets(store.website_id, widgets)
    [entry] = sync(dagster_instance, "moving")
    assert (entry.status, entry.synced, entry.unchanged, entry.deleted) == ("success", 1, 2, 1)
    rec = store.shop.metaobjects["pa_recommendation_widget"]
    assert f"pa-{removed['id'].lower()}" not in rec
    assert rec[f"pa-{widgets[0]['id'].lower()}"]["fields"]["name"] == "Renamed in PA"


def test_mass_delete_is_refused_unless_allowed(stores, dagster_instance, sandbox):
    store = stores.add("shrinking", types=[1] * 30)
    sync(dagster_instance, "shrinking")
    sandbox.pa.set_widgets(store.website_id, widgets_of_types(store.website_id, [1] * 5))
    [refused] = sync(dagster_instance, "shrinking")
    assert refused.deleted == 0 and "deletes refused" in refused.message
    assert len(handles(store.shop, "pa_recommendation_widget")) == 30
    [allowed] = sync(dagster_instance, "shrinking", allow_mass_delete=True)
    assert allowed.deleted == 25
    assert len(handles(store.shop, "pa_recommendation_widget")) == 5


def test_dry_run_plans_without_writing(stores, dagster_instance):
    store = stores.add("careful", types=[1, 6, 5, 5])
    [entry] = sync(dagster_instance, "careful", dry_run=True)
    assert entry.dry_run is True and entry.synced == 4 and "nothing was written" in entry.message
    assert store.shop.stats.upserts == 0 and store.shop.count("pa_bundle_widget") == 0


def test_pa_outage_is_a_failed_entry_that_says_why(stores, dagster_instance, sandbox, monkeypatch):
    monkeypatch.setenv("PA_WIDGET_PA_RETRY_BUDGET_SECONDS", "0.5")
    store = stores.add("pa-down", types=[1, 6])
    sandbox.pa.faults.down = True
    [entry] = sync(dagster_instance, "pa-down")
    assert entry.status == "failed" and entry.total == 0
    assert "pa_widgets" in entry.message and "pa-down" in entry.message
    assert store.shop.stats.upserts == 0


def test_widget_rejected_by_validation_fails_alone(stores, dagster_instance):
    website = "8b0e0cf2-58b2-5a0c-9a43-5e6a0d4d1c11"
    good = [make_widget(i, website, 1) for i in range(3)]
    bad = {**make_widget(9, website, 1), "numberOfSlots": "eight"}
    store = stores.add("mixed", widgets=good + [bad])
    [entry] = sync(dagster_instance, "mixed")
    assert (entry.status, entry.synced, entry.failed) == ("partial", 3, 1)
    [error] = entry.errors
    assert error.widget_id == bad["id"] and "numberOfSlots" in error.message
    assert len(handles(store.shop, "pa_recommendation_widget")) == 3


def test_unknown_partition_key_is_refused(stores, dagster_instance):
    stores.add("known", types=[1])
    dagster_instance.add_dynamic_partitions("stores", ["ghost"])
    [entry] = sync(dagster_instance, "ghost")
    assert entry.status == "failed"
    assert "store 'ghost' is not in the store registry" in entry.message


def test_history_as_dataframe_and_cli_json(stores, dagster_instance, capsys):
    stores.add("one", types=[1])
    stores.add("two", types=[6, 2])
    sync(dagster_instance, "one", "two")
    frame = history_dataframe(dagster_instance)
    assert list(frame["store"]) == ["one", "two"]
    assert list(frame["status"]) == ["success", "success"]
    assert list(frame.columns[:13]) == ["store", "run_id", "trigger", "status", "total", "synced", "unchanged",
                                        "deleted", "skipped", "failed", "errors", "started_at", "ended_at"]
    assert cli_main(["history", "--store", "two", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [(e["store"], e["total"], e["skipped"]) for e in printed] == [("two", 2, 1)]


def test_cli_sync_exit_code_reflects_status(stores, dagster_instance, capsys):
    stores.add("fine", types=[1])
    stores.add("notfine", types=[5], broken={"bundle": "name"})
    assert cli_main(["sync", "--store", "fine", "--json"]) == 0
    assert cli_main(["sync", "--all", "--json"]) == 1
    assert cli_main(["sync", "--store", "nope"]) == 2
    assert "not in the store registry: nope" in capsys.readouterr().err


@pytest.mark.postgres
def test_same_sync_on_postgres_backed_instance(stores, pg_database, tmp_path, monkeypatch):
    from dagster import instance_for_test

    stores.add("pg-store", types=[1, 6, 5, 2])
    stores.add("pg-broken", types=[5, 1], broken={"bundle": "slots"})
    overrides = {"storage": {"postgres": {"postgres_url": pg_database}}}
    (tmp_path / "home").mkdir()
    with instance_for_test(overrides=overrides, temp_dir=str(tmp_path / "home")) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        entries = sync(instance, "pg-store", "pg-broken")
        assert [e.status for e in entries] == ["success", "partial"]
        again = read_history(instance)
        assert [(e.store, e.status, e.synced) for e in again] == [("pg-store", "success", 3), ("pg-broken", "partial", 1)]


def test_cli_does_not_start_a_second_sync_of_a_store_in_flight(stores, dagster_instance, capsys):
    from dagster import DagsterRun, DagsterRunStatus

    stores.add("busy", types=[1])
    stores.add("idle", types=[1])
    dagster_instance.add_run(
        DagsterRun(job_name="sync_store", run_id="already-running", status=DagsterRunStatus.STARTED,
                   tags={"dagster/partition": "busy"})
    )
    assert cli_main(["sync", "--store", "busy", "--store", "idle", "--json"]) == 1
    captured = capsys.readouterr()
    assert "not started: run already-running of this store is still queued or running" in captured.err
    assert [e["store"] for e in json.loads(captured.out)] == ["idle"]
    assert stores.stores["busy"].shop.stats.upserts == 0


def test_sync_in_flight_shows_as_running_with_what_it_has_done(stores, dagster_instance):
    import threading
    import time

    store = stores.add("slow", types=[1, 6] * 3)
    store.shop.faults.latency_seconds = 0.3
    worker = threading.Thread(target=sync, args=(dagster_instance, "slow"))
    worker.start()
    seen = []
    deadline = time.monotonic() + 60
    while worker.is_alive() and time.monotonic() < deadline:
        entries = read_history(dagster_instance, store="slow")
        if entries and entries[-1].status == "running":
            seen.append(entries[-1])
        time.sleep(0.1)
    worker.join()
    assert seen, "never saw the run in flight"
    assert all(e.ended_at is None for e in seen)
    assert 3 in {e.synced for e in seen}  # one type written while the other was still going
    assert any(e.total == 6 for e in seen)
    [final] = read_history(dagster_instance, store="slow")
    assert (final.status, final.synced) == ("success", 6)


def test_rewrite_unchanged_repairs_values_lost_behind_the_hash(stores, dagster_instance):
    store = stores.add("drifted", types=[1, 1])
    sync(dagster_instance, "drifted")
    store.shop.remove_definition_field("pa_recommendation_widget", "slots")  # drops every slots value
    defs.resolve_job_def("ensure_metaobject_definitions").execute_in_process(
        instance=dagster_instance,
        run_config={"ops": {"ensure_definitions_for_stores": {"config": {"stores": ["drifted"],
                                                                         "add_missing_fields": True}}}},
    )
    [plain] = sync(dagster_instance, "drifted")
    assert (plain.unchanged, plain.synced) == (2, 0)
    assert all("slots" not in m["fields"] for m in store.shop.metaobjects["pa_recommendation_widget"].values())
    [repaired] = sync(dagster_instance, "drifted", rewrite_unchanged=True)
    assert (repaired.unchanged, repaired.synced) == (0, 2)
    assert all(m["fields"].get("slots") for m in store.shop.metaobjects["pa_recommendation_widget"].values())


def test_bulk_thresholds_from_resource_config_reach_the_client(stores):
    from pa_widget_pipeline.defs.resources import WidgetSyncResource

    stores.add("tuned", types=[1])
    resource = WidgetSyncResource(bulk_threshold=50, bulk_read_threshold=2000)
    client = resource.shopify_client(resource.store("tuned"))
    assert (client.bulk_threshold, client.bulk_read_threshold) == (50, 2000)


def test_demo_registry_works_without_exported_credentials_and_others_do_not(monkeypatch, tmp_path):
    from pa_widget_pipeline.defs.resources import WidgetSyncResource
    from pa_widget_pipeline.sandbox.demo import DEMO_STORES, demo_environment
    from pa_widget_pipeline.stores import DEMO_REGISTRY_PATH, RegistryError

    for name in demo_environment():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("PA_WIDGET_STORES", raising=False)
    demo = WidgetSyncResource()
    healthy = demo.store("demo-healthy")
    assert demo.secrets(healthy).shopify_token == DEMO_STORES[0].shopify_token

    copy = tmp_path / "copy.yaml"
    copy.write_text(DEMO_REGISTRY_PATH.read_text())  # the same stores, but not the bundled demo registry
    other = WidgetSyncResource(registry_path=str(copy))
    with pytest.raises(RegistryError, match="DEMO_HEALTHY_SHOPIFY_TOKEN is not set"):
        other.secrets(other.store("demo-healthy"))
