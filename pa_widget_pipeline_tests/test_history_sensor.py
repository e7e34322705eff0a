"""The sync history in the UI: each finished sync run becomes an observation of `sync_history` per store."""

from dagster import AssetKey, AssetRecordsFilter, DagsterEventType, build_run_status_sensor_context

from pa_widget_pipeline.defs.history_sensor import history_sensors
from pa_widget_pipeline.defs.launch import sync_stores

ON_SUCCESS, ON_FAILURE, _ = history_sensors


def run_sensor(sensor, instance, run_id):
    run = instance.get_run_by_id(run_id)
    [end_event] = instance.all_logs(
        run_id, of_type={DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_FAILURE}
    )
    context = build_run_status_sensor_context(
        sensor_name=sensor.name, dagster_event=end_event.dagster_event, dagster_instance=instance, dagster_run=run
    )
    return sensor(context)


def observations(instance, store):
    return instance.fetch_observations(
        AssetRecordsFilter(asset_key=AssetKey("sync_history"), asset_partitions=[store]), limit=10
    ).records


def test_each_finished_sync_is_observed_in_its_store_partition(stores, dagster_instance):
    stores.add("good", types=[1, 6, 2])
    stores.add("bad", types=[5, 1], broken={"bundle": "slots"})
    good, bad = sync_stores(dagster_instance, ["good", "bad"], out=open("/dev/null", "w"))
    # The CLI path recorded both already; the sensors, seeing the same runs end, do not record them twice.
    assert "already in the history" in run_sensor(ON_SUCCESS, dagster_instance, good.run_id).skip_message
    assert "already in the history" in run_sensor(ON_FAILURE, dagster_instance, bad.run_id).skip_message

    [good_obs] = observations(dagster_instance, "good")
    metadata = good_obs.event_log_entry.asset_observation.metadata
    assert metadata["status"].value == "success"
    assert (metadata["total"].value, metadata["synced"].value, metadata["skipped"].value) == (3, 2, 1)
    assert metadata["entry"].data["run_id"] == good.run_id

    [bad_obs] = observations(dagster_instance, "bad")
    bad_metadata = bad_obs.event_log_entry.asset_observation.metadata
    assert bad_metadata["status"].value == "partial"
    assert bad_metadata["failed"].value == 1
    assert "missing fields: slots" in bad_obs.event_log_entry.asset_observation.description


def test_sensor_records_a_run_launched_elsewhere_once(stores, dagster_instance):
    from pa_widget_pipeline.definitions import defs

    stores.add("ui-launched", types=[1])
    dagster_instance.add_dynamic_partitions("stores", ["ui-launched"])
    result = defs.resolve_job_def("sync_store").execute_in_process(
        instance=dagster_instance, partition_key="ui-launched"
    )
    assert observations(dagster_instance, "ui-launched") == []
    assert run_sensor(ON_SUCCESS, dagster_instance, result.run_id) is None
    assert len(observations(dagster_instance, "ui-launched")) == 1
    assert run_sensor(ON_SUCCESS, dagster_instance, result.run_id).skip_message.endswith("already in the history")
    assert len(observations(dagster_instance, "ui-launched")) == 1
