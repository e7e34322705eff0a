from dagster import Definitions, in_process_executor

from pa_widget_pipeline.defs.assets import sync_assets
from pa_widget_pipeline.defs.automation import (
    definition_fix_sensor,
    store_registry_sensor,
    sync_all_stores_schedule,
)
from pa_widget_pipeline.defs.definitions_job import ensure_definitions_job
from pa_widget_pipeline.defs.history_sensor import history_sensors, sync_history_spec
from pa_widget_pipeline.defs.jobs import sync_store_job
from pa_widget_pipeline.defs.resources import SyncOptions, WidgetSyncResource

# In-process: the three write steps of one store share one Shopify cost bucket, so running them in
# parallel processes buys no throughput and costs a process each.
defs = Definitions(
    assets=[*sync_assets, sync_history_spec],
    jobs=[sync_store_job, ensure_definitions_job],
    schedules=[sync_all_stores_schedule],
    sensors=[store_registry_sensor, definition_fix_sensor, *history_sensors],
    resources={"widget_sync": WidgetSyncResource(), "sync_options": SyncOptions()},
    executor=in_process_executor,
)
