"""Sensors and the schedule that keep every registered store in step without anyone clicking.

- `store_registry_sensor`: a store added to the registry gets its partition and a first sync. A store removed
  from the registry is no longer scheduled; its partition (and so its history) stays.
- `sync_all_stores_schedule`: one run per registered store per tick; run keys make a tick idempotent.
- `definition_fix_sensor`: for a store whose latest definition check failed, re-reads the definition and, once
  it matches, requests a run of the store's graph for the failed types.
"""


import os

from dagster import (
    AssetCheckKey,
    AssetKey,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    schedule,
    sensor,
)
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from pa_widget_pipeline.defs.assets import DEFINITION_CHECK
from pa_widget_pipeline.defs.history import TRIGGER_TAG
from pa_widget_pipeline.defs.jobs import sync_store_job
from pa_widget_pipeline.defs.partitions import STORES_PARTITION_NAME, stores_partitions
from pa_widget_pipeline.defs.resources import WidgetSyncResource
from pa_widget_pipeline.shopify.errors import ShopifyError
from pa_widget_pipeline.stores import RegistryError, StoreRegistry
from pa_widget_pipeline.sync.contract import TYPE_KEYS, check_definition

SYNC_CRON_ENV = "PA_WIDGET_SYNC_CRON"
DEFAULT_SYNC_CRON = "0 * * * *"
FETCH_ASSETS = [AssetKey("pa_widgets"), AssetKey("widgets_by_type")]


def registered_partitions(context, registry: StoreRegistry) -> list[str]:
    """Stores both in the registry and already added as partitions, in registry order."""
    partitions = set(context.instance.get_dynamic_partitions(STORES_PARTITION_NAME))
    return [key for key in registry.keys if key in partitions]


@sensor(
    name="store_registry_sensor",
    job=sync_store_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Adds a partition for each new store of the registry and requests its first sync.",
)
def store_registry_sensor(context: SensorEvaluationContext, widget_sync: WidgetSyncResource):
    try:
        keys = widget_sync.registry().keys
    except RegistryError as exc:
        return SkipReason(f"store registry is invalid, nothing added: {exc}")
    existing = set(context.instance.get_dynamic_partitions(STORES_PARTITION_NAME))
    new = [key for key in keys if key not in existing]
    if not new:
        return SkipReason(f"no new stores ({len(keys)} registered)")
    return SensorResult(
        run_requests=[
            RunRequest(partition_key=key, run_key=f"first-sync:{key}", tags={TRIGGER_TAG: "sensor"}) for key in new
        ],
        dynamic_partitions_requests=[stores_partitions.build_add_request(new)],
    )


@schedule(
    name="sync_all_stores_schedule",
    job=sync_store_job,
    cron_schedule=os.environ.get(SYNC_CRON_ENV, DEFAULT_SYNC_CRON),
    default_status=DefaultScheduleStatus.RUNNING,
    description=f"One sync per registered store on a cron (${SYNC_CRON_ENV}, default hourly).",
)
def sync_all_stores_schedule(context: ScheduleEvaluationContext, widget_sync: WidgetSyncResource):
    try:
        keys = registered_partitions(context, widget_sync.registry())
    except RegistryError as exc:
        return SkipReason(f"store registry is invalid, no runs requested: {exc}")
    if not keys:
        return SkipReason("no registered store has a partition yet (the registry sensor adds them)")
    tick = context.scheduled_execution_time.strftime("%Y%m%dT%H%M%S")
    return [
        RunRequest(partition_key=key, run_key=f"scheduled:{key}:{tick}", tags={TRIGGER_TAG: "schedule"})
        for key in keys
    ]


def _latest_check(context, type_key: str, store: str):
    check_key = AssetCheckKey(AssetKey(f"{type_key}_metaobjects"), DEFINITION_CHECK)
    latest = context.instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [check_key], partition_filter=PartitionKeyFilter(key=store)
    )
    return latest.get(check_key)


@sensor(
    name="definition_fix_sensor",
    minimum_interval_seconds=120,
    default_status=DefaultSensorStatus.RUNNING,
    asset_selection=[*FETCH_ASSETS, *(AssetKey(f"{t}_metaobjects") for t in TYPE_KEYS)],
    description="Re-reads each failed metaobject definition; once it matches, re-syncs that store's failed types.",
)
def definition_fix_sensor(context: SensorEvaluationContext, widget_sync: WidgetSyncResource):
    try:
        registry = widget_sync.registry()
        keys = registered_partitions(context, registry)
    except RegistryError as exc:
        return SkipReason(f"store registry is invalid: {exc}")
    requests: list[RunRequest] = []
    waiting: list[str] = []
    for key in keys:
        failed = {}
        for type_key in TYPE_KEYS:
            record = _latest_check(context, type_key, key)
            if record is not None and record.status == AssetCheckExecutionRecordStatus.FAILED:
                failed[type_key] = record
        if not failed:
            continue
        store = registry.get(key)
        try:
            client = widget_sync.shopify_client(store)
            fixed = [
                type_key for type_key in failed
                if check_definition(store.metaobject_types[type_key],
                                    client.definition_by_type(store.metaobject_types[type_key])).passed
            ]
        except (ShopifyError, RegistryError) as exc:
            context.log.warning(f"{key}: cannot re-read definitions: {exc}")
            continue
        waiting.extend(f"{key}/{t}" for t in failed if t not in fixed)
        if fixed:
            marker = "-".join(f"{t}{failed[t].id}" for t in sorted(fixed))
            requests.append(
                RunRequest(
                    partition_key=key,
                    run_key=f"definition-fixed:{key}:{marker}",
                    asset_selection=[*FETCH_ASSETS, *(AssetKey(f"{t}_metaobjects") for t in fixed)],
                    tags={TRIGGER_TAG: "sensor"},
                )
            )
    if not requests:
        return SkipReason(
            "still failing: " + ", ".join(waiting) if waiting else "no failed definition checks"
        )
    return requests
