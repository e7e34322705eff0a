from dagster import AssetSelection, define_asset_job

from pa_widget_pipeline.defs.assets import sync_assets

SYNC_JOB_NAME = "sync_store"

# One run = one sync of one store: the whole graph for one partition.
sync_store_job = define_asset_job(
    SYNC_JOB_NAME,
    selection=AssetSelection.assets(*sync_assets),
    description="Sync one store: fetch its PA widgets, check each metaobject definition, write what changed.",
)
