"""The sync history in the Dagster UI: every finished sync run becomes an observation of the `sync_history`
asset, in its store's partition, carrying the history entry as metadata. The asset's page then shows, per store,
each sync over time (status, counts plotted, errors), next to the runs that produced them.
"""

from dagster import (
    AssetKey,
    AssetObservation,
    AssetRecordsFilter,
    DagsterInstance,
    AssetSpec,
    DagsterRunStatus,
    DefaultSensorStatus,
    MetadataValue,
    RunStatusSensorContext,
    RunsFilter,
    SkipReason,
    run_status_sensor,
)

from pa_widget_pipeline.defs.assets import GROUP, errors_table
from pa_widget_pipeline.defs.history import PARTITION_TAG, entry_from_record, is_sync_run
from pa_widget_pipeline.defs.partitions import stores_partitions
from pa_widget_pipeline.sync.outcome import SyncHistoryEntry

SYNC_HISTORY_KEY = "sync_history"

sync_history_spec = AssetSpec(
    SYNC_HISTORY_KEY,
    partitions_def=stores_partitions,
    group_name=GROUP,
    kinds={"dagster"},
    description="One observation per finished sync run of the store: status, counts, errors, start and end time. "
    "Recorded by the sync_history sensors from Dagster's own run storage.",
)


def history_observation(entry: SyncHistoryEntry) -> AssetObservation:
    return AssetObservation(
        asset_key=SYNC_HISTORY_KEY,
        partition=entry.store,
        description=f"{entry.status}: {entry.message}" if entry.message else entry.status,
        metadata={
            "status": entry.status,
            "trigger": entry.trigger,
            "run_id": MetadataValue.dagster_run(entry.run_id),
            "total": entry.total,
            "synced": entry.synced,
            "unchanged": entry.unchanged,
            "deleted": entry.deleted,
            "skipped": entry.skipped,
            "failed": entry.failed,
            "dry_run": entry.dry_run,
            "started_at": MetadataValue.timestamp(entry.started_at),
            "ended_at": MetadataValue.timestamp(entry.ended_at) if entry.ended_at else "-",
            "errors": errors_table(entry.errors),
            "entry": MetadataValue.json(entry.model_dump(mode="json")),
        },
    )


def _already_recorded(instance: DagsterInstance, store: str, run_id: str) -> bool:
    recent = instance.fetch_observations(
        AssetRecordsFilter(asset_key=AssetKey(SYNC_HISTORY_KEY), asset_partitions=[store]), limit=50
    ).records
    return any(
        (r.event_log_entry.asset_observation.metadata.get("entry") is not None
         and r.event_log_entry.asset_observation.metadata["entry"].data.get("run_id") == run_id)
        for r in recent
    )


def record_history(instance: DagsterInstance, run_id: str, entry: SyncHistoryEntry | None = None) -> str | None:
    """Record a finished sync run's entry as a `sync_history` observation, once; returns why not, if not.

    Called by the CLI right after its runs and by the sensors for every run (UI, schedule, backfill), so a run
    launched by the CLI while a daemon is running is still recorded only once. `entry`: the run's entry when
    the caller already assembled it.
    """
    [record] = instance.get_run_records(RunsFilter(run_ids=[run_id]), limit=1)
    if not is_sync_run(record):
        return f"run {run_id} is not a store sync"
    store = record.dagster_run.tags[PARTITION_TAG]
    if store not in instance.get_dynamic_partitions(stores_partitions.name):
        return f"run {run_id} is for an unknown store partition"
    if _already_recorded(instance, store, run_id):
        return f"run {run_id} is already in the history"
    instance.report_runless_asset_event(history_observation(entry or entry_from_record(instance, record)))
    return None


def _record_history(context: RunStatusSensorContext):
    why_not = record_history(context.instance, context.dagster_run.run_id)
    return SkipReason(why_not) if why_not else None


def _history_sensor(status: DagsterRunStatus, name: str):
    @run_status_sensor(
        run_status=status,
        name=name,
        minimum_interval_seconds=30,
        default_status=DefaultSensorStatus.RUNNING,
        description=f"Records the history entry of every store sync that ends {status.value.lower()}.",
    )
    def _sensor(context: RunStatusSensorContext):
        return _record_history(context)

    return _sensor


history_sensors = [
    _history_sensor(DagsterRunStatus.SUCCESS, "sync_history_on_success"),
    _history_sensor(DagsterRunStatus.FAILURE, "sync_history_on_failure"),
    _history_sensor(DagsterRunStatus.CANCELED, "sync_history_on_cancel"),
]
