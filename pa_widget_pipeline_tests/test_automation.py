"""Sensors, the schedule and the ensure-definitions job, evaluated directly against the sandbox over HTTP.

Sensors and the schedule are called with `build_sensor_context` / `build_schedule_context` on a real (temporary)
instance, with the `widget_sync` resource passed in, exactly as the daemon would call them; the runs they request
are then executed in process, the way the daemon would launch them.
"""

import os
from datetime import datetime, timezone

import pytest
from dagster import (
    AddDynamicPartitionsRequest,
    AssetKey,
    DagsterEventType,
    RunRequest,
    SensorResult,
    SkipReason,
    build_schedule_context,
    build_sensor_context,
)

from pa_widget_pipeline.definitions import defs
from pa_widget_pipeline.defs.automation import (
    definition_fix_sensor,
    store_registry_sensor,
    sync_all_stores_schedule,
)
from pa_widget_pipeline.defs.history import TRIGGER_TAG, history_entry_for_run, read_history
from pa_widget_pipeline.defs.launch import sync_stores
from pa_widget_pipeline.defs.resources import WidgetSyncResource
from pa_widget_pipeline.sandbox.demo import contract_field_definitions
from pa_widget_pipeline.sync.contract import CONTRACT_KEYS, check_definition

TICK = datetime(2026, 3, 2, 14, 0, tzinfo=timezone.utc)


def resources():
    # registry_path None: the resource reads $PA_WIDGET_STORES, which the harness sets.
    return {"widget_sync": WidgetSyncResource()}


def sensor_ctx(instance):
    return build_sensor_context(instance=instance, resources=resources())


def schedule_ctx(instance, when=TICK):
    return build_schedule_context(instance=instance, resources=resources(), scheduled_execution_time=when)


def quiet_sync(instance, *keys):
    with open(os.devnull, "w") as out:
        return sync_stores(instance, list(keys), out=out)


def add_definition_field(shop, metaobject_type, key):
    """Fix a definition in the sandbox the way a merchant would in the admin: create the missing field."""
    [spec] = [f for f in contract_field_definitions() if f["key"] == key]
    with shop.lock:
        _, errors = shop.update_definition_input(
            shop.definition(metaobject_type)["id"], {"fieldDefinitions": [{"create": spec}]}
        )
    assert not errors


# ----------------------------------------------------------------------------------------- store_registry_sensor


def test_registry_sensor_adds_new_stores_and_requests_their_first_sync(stores, dagster_instance):
    stores.add("north", types=[1])
    stores.add("south", types=[6])
    result = store_registry_sensor(sensor_ctx(dagster_instance))
    assert isinstance(result, SensorResult)
    [add] = result.dynamic_partitions_requests
    assert isinstance(add, AddDynamicPartitionsRequest)
    assert (add.partitions_def_name, list(add.partition_keys)) == ("stores", ["north", "south"])
    assert [(r.partition_key, r.run_key, r.tags[TRIGGER_TAG]) for r in result.run_requests] == [
        ("north", "first-sync:north", "sensor"),
        ("south", "first-sync:south", "sensor"),
    ]


def test_registry_sensor_requests_only_new_stores_and_leaves_removed_ones_alone(stores, dagster_instance):
    stores.add("kept", types=[1])
    stores.add("gone", types=[1])
    dagster_instance.add_dynamic_partitions("stores", ["kept", "gone"])
    stores.entries = [e for e in stores.entries if e["key"] != "gone"]
    stores.add("fresh", types=[1])

    result = store_registry_sensor(sensor_ctx(dagster_instance))
    assert [r.partition_key for r in result.run_requests] == ["fresh"]
    assert [list(r.partition_keys) for r in result.dynamic_partitions_requests] == [["fresh"]]
    # No delete request: the removed store's partition, and so its history, stays.
    assert all(type(r).__name__ == "AddDynamicPartitionsRequest" for r in result.dynamic_partitions_requests)

    dagster_instance.add_dynamic_partitions("stores", ["fresh"])
    again = store_registry_sensor(sensor_ctx(dagster_instance))
    assert isinstance(again, SkipReason) and "no new stores" in again.skip_message
    assert set(dagster_instance.get_dynamic_partitions("stores")) == {"kept", "gone", "fresh"}


def test_registry_sensor_skips_an_invalid_registry_and_adds_nothing(stores, dagster_instance):
    stores.add("good", types=[1])
    stores.entries.append({**stores.entries[0], "key": "Bad Key!"})
    stores.write()
    result = store_registry_sensor(sensor_ctx(dagster_instance))
    assert isinstance(result, SkipReason)
    assert "store registry is invalid" in result.skip_message and "Bad Key!" in result.skip_message
    assert dagster_instance.get_dynamic_partitions("stores") == []

    stores.path.write_text("stores: [unclosed\n")
    result = store_registry_sensor(sensor_ctx(dagster_instance))
    assert isinstance(result, SkipReason) and "not valid YAML" in result.skip_message


def test_registry_sensor_never_puts_secrets_in_what_it_returns(stores, dagster_instance):
    store = stores.add("secretive", types=[1])
    stores.entries.append({**stores.entries[0], "key": "-broken-"})
    stores.write()
    skipped = store_registry_sensor(sensor_ctx(dagster_instance))
    stores.entries.pop()
    stores.write()
    requested = store_registry_sensor(sensor_ctx(dagster_instance))
    for secret in store.secrets:
        assert secret not in skipped.skip_message
        assert secret not in repr(requested)


# ----------------------------------------------------------------------------------------- sync_all_stores_schedule


def test_schedule_requests_one_run_per_registered_store_with_a_partition(stores, dagster_instance):
    stores.add("a1", types=[1])
    stores.add("b2", types=[1])
    stores.add("not-yet", types=[1])  # registered, but the sensor has not added its partition yet
    dagster_instance.add_dynamic_partitions("stores", ["a1", "b2"])
    requests = sync_all_stores_schedule(schedule_ctx(dagster_instance))
    assert all(isinstance(r, RunRequest) for r in requests)
    assert [r.partition_key for r in requests] == ["a1", "b2"]
    assert all(r.tags[TRIGGER_TAG] == "schedule" for r in requests)
    assert len({r.run_key for r in requests}) == 2
    assert all("20260302T140000" in r.run_key for r in requests)


def test_schedule_tick_is_idempotent_and_the_next_tick_is_new(stores, dagster_instance):
    stores.add("tick", types=[1])
    dagster_instance.add_dynamic_partitions("stores", ["tick"])
    first = sync_all_stores_schedule(schedule_ctx(dagster_instance))
    same = sync_all_stores_schedule(schedule_ctx(dagster_instance))
    later = sync_all_stores_schedule(schedule_ctx(dagster_instance, TICK.replace(hour=15)))
    assert [r.run_key for r in first] == [r.run_key for r in same]
    assert first[0].run_key != later[0].run_key


def test_schedule_drops_a_store_removed_from_the_registry_but_keeps_its_partition(stores, dagster_instance):
    stores.add("stay", types=[1])
    stores.add("leave", types=[1])
    dagster_instance.add_dynamic_partitions("stores", ["stay", "leave"])
    stores.entries = [e for e in stores.entries if e["key"] != "leave"]
    stores.write()
    requests = sync_all_stores_schedule(schedule_ctx(dagster_instance))
    assert [r.partition_key for r in requests] == ["stay"]
    assert set(dagster_instance.get_dynamic_partitions("stores")) == {"stay", "leave"}


def test_schedule_skips_without_partitions_or_with_an_invalid_registry(stores, dagster_instance):
    stores.add("lonely", types=[1])
    result = sync_all_stores_schedule(schedule_ctx(dagster_instance))
    assert isinstance(result, SkipReason) and "no registered store has a partition" in result.skip_message
    dagster_instance.add_dynamic_partitions("stores", ["lonely"])
    stores.path.write_text("stores: 42\n")
    result = sync_all_stores_schedule(schedule_ctx(dagster_instance))
    assert isinstance(result, SkipReason) and "store registry is invalid" in result.skip_message


def test_scheduled_run_is_recorded_with_the_schedule_trigger(stores, dagster_instance):
    stores.add("hourly", types=[1, 6])
    dagster_instance.add_dynamic_partitions("stores", ["hourly"])
    [request] = sync_all_stores_schedule(schedule_ctx(dagster_instance))
    result = defs.resolve_job_def("sync_store").execute_in_process(
        instance=dagster_instance, partition_key=request.partition_key, tags=request.tags, raise_on_error=False
    )
    entry = history_entry_for_run(dagster_instance, result.run_id)
    assert (entry.store, entry.trigger, entry.status, entry.synced) == ("hourly", "schedule", "success", 2)


# ----------------------------------------------------------------------------------------- definition_fix_sensor


def test_definition_fix_sensor_waits_while_broken_then_resyncs_the_failed_type(stores, dagster_instance):
    store = stores.add("fixable", types=[1, 6, 5, 5], broken={"bundle": "slots"})
    stores.add("healthy", types=[1])
    assert [e.status for e in quiet_sync(dagster_instance, "fixable", "healthy")] == ["partial", "success"]
    assert store.shop.count("pa_bundle_widget") == 0

    still = definition_fix_sensor(sensor_ctx(dagster_instance))
    assert isinstance(still, SkipReason)
    assert still.skip_message == "still failing: fixable/bundle"

    add_definition_field(store.shop, "pa_bundle_widget", "slots")
    requests = definition_fix_sensor(sensor_ctx(dagster_instance))
    [request] = requests
    assert request.partition_key == "fixable"
    assert request.tags[TRIGGER_TAG] == "sensor"
    assert set(request.asset_selection) == {
        AssetKey("pa_widgets"), AssetKey("widgets_by_type"), AssetKey("bundle_metaobjects")
    }
    # The same failed evaluation gives the same run key: the daemon launches it once, however many ticks see it.
    [again] = definition_fix_sensor(sensor_ctx(dagster_instance))
    assert again.run_key == request.run_key

    # What the daemon launches for a sensor with an asset selection: the implicit asset job, that subset.
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=dagster_instance,
        partition_key=request.partition_key,
        asset_selection=request.asset_selection,
        tags=request.tags,
        raise_on_error=False,
    )
    assert result.success
    steps = {e.step_key for e in result.all_events if e.event_type == DagsterEventType.STEP_SUCCESS}
    assert steps == {"pa_widgets", "widgets_by_type", "bundle_metaobjects"}
    entry = history_entry_for_run(dagster_instance, result.run_id)
    assert (entry.store, entry.trigger, entry.status) == ("fixable", "sensor", "success")
    # The entry covers the types the run selected: the two bundles, not the other types' widgets as "not synced".
    assert (entry.total, entry.synced, entry.failed) == (2, 2, 0)
    assert entry.total == entry.synced + entry.unchanged + entry.skipped + entry.failed
    assert store.shop.count("pa_bundle_widget") == 2

    done = definition_fix_sensor(sensor_ctx(dagster_instance))
    assert isinstance(done, SkipReason) and done.skip_message == "no failed definition checks"
    assert [(e.store, e.trigger, e.status) for e in read_history(dagster_instance, store="fixable")] == [
        ("fixable", "manual", "partial"), ("fixable", "sensor", "success")
    ]


@pytest.mark.postgres
def test_definition_fix_sensor_reads_partitioned_check_results_from_postgres(stores, pg_database, tmp_path):
    """The sensor's per-store lookup of the latest check (a partition filter) on the production storage."""
    from dagster import instance_for_test

    store = stores.add("pg-fix", types=[1, 5], broken={"bundle": "slots"})
    stores.add("pg-ok", types=[5])
    (tmp_path / "home").mkdir()
    overrides = {"storage": {"postgres": {"postgres_url": pg_database}}}
    with instance_for_test(overrides=overrides, temp_dir=str(tmp_path / "home")) as instance:
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert [e.status for e in quiet_sync(instance, "pg-fix", "pg-ok")] == ["partial", "success"]
        still = definition_fix_sensor(sensor_ctx(instance))
        assert isinstance(still, SkipReason) and still.skip_message == "still failing: pg-fix/bundle"
        add_definition_field(store.shop, "pa_bundle_widget", "slots")
        [request] = definition_fix_sensor(sensor_ctx(instance))
        assert request.partition_key == "pg-fix" and AssetKey("bundle_metaobjects") in request.asset_selection


def test_definition_fix_sensor_requests_only_the_fixed_types(stores, dagster_instance):
    store = stores.add("twice-broken", types=[1, 5], broken={"bundle": "slots", "recommendation": "name"})
    [entry] = quiet_sync(dagster_instance, "twice-broken")
    assert entry.status == "failed"

    add_definition_field(store.shop, "pa_bundle_widget", "slots")
    [request] = definition_fix_sensor(sensor_ctx(dagster_instance))
    assert AssetKey("bundle_metaobjects") in request.asset_selection
    assert AssetKey("recommendation_metaobjects") not in request.asset_selection
    assert request.run_key.startswith("definition-fixed:twice-broken:bundle")


# ----------------------------------------------------------------------------------------- ensure definitions job


def run_ensure(instance, **config):
    job = defs.resolve_job_def("ensure_metaobject_definitions")
    result = job.execute_in_process(
        instance=instance,
        run_config={"ops": {"ensure_definitions_for_stores": {"config": config}}},
        raise_on_error=False,
    )
    report = None
    for event in result.all_events:
        if event.event_type == DagsterEventType.STEP_OUTPUT:
            report = event.event_specific_data.metadata["report"].data
        elif event.event_type == DagsterEventType.STEP_FAILURE:
            report = event.event_specific_data.user_failure_data
    return result, report


def field_types(shop, metaobject_type):
    return {f["key"]: f["type"]["name"] for f in shop.definition(metaobject_type)["fieldDefinitions"]}


def test_ensure_definitions_creates_missing_definitions_that_pass_the_check(stores, dagster_instance):
    bare = stores.add("bare", types=[1, 6, 5], definitions=False)
    result, report = run_ensure(dagster_instance, stores=["bare"])
    assert result.success
    assert [(r["type_key"], r["action"]) for r in report] == [
        ("recommendation", "created"), ("merchandising", "created"), ("bundle", "created")
    ]
    for metaobject_type in ("pa_recommendation_widget", "pa_merchandising_widget", "pa_bundle_widget"):
        assert check_definition(metaobject_type, bare.shop.definition(metaobject_type)).passed
    # and the store now syncs
    [entry] = quiet_sync(dagster_instance, "bare")
    assert (entry.status, entry.synced) == ("success", 3)


def test_ensure_definitions_dry_run_creates_nothing(stores, dagster_instance):
    bare = stores.add("dry", types=[1], definitions=False)
    result, report = run_ensure(dagster_instance, stores=["dry"], dry_run=True)
    assert result.success
    assert {r["action"] for r in report} == {"would_create"}
    assert bare.shop.definitions == {}


def test_ensure_definitions_adds_missing_fields_only_when_asked(stores, dagster_instance):
    store = stores.add("gappy", types=[5], broken={"bundle": "slots"})
    result, report = run_ensure(dagster_instance, stores=["gappy"])
    assert result.success
    [bundle] = [r for r in report if r["type_key"] == "bundle"]
    assert (bundle["action"], bundle["missing_fields"]) == ("needs_fields", ["slots"])
    assert "slots" not in field_types(store.shop, "pa_bundle_widget")

    result, report = run_ensure(dagster_instance, stores=["gappy"], add_missing_fields=True)
    assert result.success
    [bundle] = [r for r in report if r["type_key"] == "bundle"]
    assert (bundle["action"], bundle["added_fields"]) == ("fields_added", ["slots"])
    assert field_types(store.shop, "pa_bundle_widget")["slots"] == "json"
    assert set(field_types(store.shop, "pa_bundle_widget")) == CONTRACT_KEYS
    assert {r["action"] for r in report if r["type_key"] != "bundle"} == {"matches"}


def test_ensure_definitions_never_changes_a_wrong_field_type_and_reports_it(stores, dagster_instance):
    store = stores.add("typo", types=[1])
    store.shop.set_definition_field("pa_recommendation_widget", "header", field_type="single_line_text_field")
    before = store.shop.definition("pa_recommendation_widget")["fieldDefinitions"]
    before = [dict(f) for f in before]
    result, report = run_ensure(dagster_instance, stores=["typo"], add_missing_fields=True)
    assert result.success
    [rec] = [r for r in report if r["type_key"] == "recommendation"]
    assert rec["action"] == "needs_attention"
    assert rec["left_alone"] == ["header: is single_line_text_field, the contract wants json"]
    assert "fix by hand" in rec["message"]
    assert store.shop.definition("pa_recommendation_widget")["fieldDefinitions"] == before
    metadata = next(
        e.event_specific_data.metadata for e in result.all_events if e.event_type == DagsterEventType.STEP_OUTPUT
    )
    assert metadata["needs_attention"].value == 1


def test_ensure_definitions_fails_naming_an_unknown_store_but_handles_the_others(stores, dagster_instance):
    bare = stores.add("real", types=[1], definitions=False)
    result, failure = run_ensure(dagster_instance, stores=["real", "imaginary"])
    assert not result.success
    assert "imaginary" in failure.description and "not in the store registry" in failure.description
    assert len(bare.shop.definitions) == 3  # the known store was still handled
    for secret in bare.secrets:
        assert secret not in failure.description
